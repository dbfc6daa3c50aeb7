"""Pilot sweeps: a grid of cells (δ × preset × tokens × seed), planned, run on Ray, tracked, and read back.

The layer above :mod:`training` (one run) and :mod:`scaling_laws` (fits): :mod:`~sweeps.plan` predicts what a
pilot will show, :mod:`~sweeps.cells` and :mod:`~sweeps.run` run it, :mod:`~sweeps.tables` writes and reads its
tables, :mod:`~sweeps.tracking` logs it to MLflow and :mod:`~sweeps.curve_check` checks its measured curves.
"""
