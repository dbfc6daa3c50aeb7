"""The ``spt`` command line, the top floor: it parses arguments and calls library functions that tests call too.

:mod:`cli.main` builds the parser from one module per command group; every other package is below it.
"""
