"""The typed config schema of every spt config kind, and the one loader.

The CLI, Ray jobs, sweeps and the notebook all import from here::

    from spt.config import load_config
    cfg = load_config("configs/corpora/quickstart.yaml", ["seed=3"])

A YAML config names its kind (``kind: mix``); each kind's model lives in a small module beside this one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pydantic import BaseModel

from spt.config.common import Location, RayCpuConfig, RayRuntimeConfig
from spt.config.corpora import CorporaConfig, CorpusLimits, TokenizerConfig
from spt.config.rephrase import RephraseConfig, StyleLibrary
from spt.config.mix import MixConfig
from spt.config.sweep import SweepConfig, SweepGrid
from spt.config.train import FinetuneConfig, InterpolateConfig, ModelConfig, TrainConfig
from spt.config.loader import ConfigError, StrictModel, apply_override, parse_override, read_yaml, validate

#: Every config kind, by the value of its ``kind`` key. New kinds register here.
KINDS: dict[str, type[BaseModel]] = {
    "corpora": CorporaConfig,
    "tokenizer": TokenizerConfig,
    "rephrase": RephraseConfig, "styles": StyleLibrary,
    "mix": MixConfig,
    "train": TrainConfig,
    "finetune": FinetuneConfig,
    "interpolate": InterpolateConfig,
    "sweep": SweepConfig,
}


def load_config(path: str | Path, overrides: Sequence[str] = (), kind: str | None = None) -> BaseModel:
    """Reads a YAML config, applies ``a.b.c=value`` overrides and validates it.

    Args:
        path: the YAML file.
        overrides: ``key.path=value`` strings; values are parsed as YAML scalars (``1e6``, ``true``, ``[1, 2]``).
        kind: if given, the config must be of this kind.

    Returns:
        The validated model for the file's ``kind``.

    Raises:
        ConfigError: with one line per problem (path, value and rule).
    """
    data = read_yaml(path)
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(data, parts, value, text)
    return validate(data, KINDS, expected_kind=kind)


__all__ = [
    "KINDS",
    "ConfigError",
    "CorporaConfig",
    "CorpusLimits",
    "Location",
    "RayCpuConfig",
    "RayRuntimeConfig",
    "RephraseConfig", "StyleLibrary",
    "StrictModel",
    "TokenizerConfig",
    "TrainConfig",
    "SweepConfig",
    "SweepGrid",
    "FinetuneConfig",
    "InterpolateConfig",
    "ModelConfig",
    "MixConfig",
    "load_config",
]
