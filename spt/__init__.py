"""spt: specialized pretraining. Core package: typed configs, the CLI, and where stages run."""

__version__ = "0.1.0"
