"""A fitted law as data: parameters, objective, bootstrap samples; saved to and loaded from JSON."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scaling_laws.laws import Law
from scaling_laws.registry import get_law
from spt.errors import InputError


@dataclass
class FitResult:
    """The outcome of :func:`scaling_laws.fitting.fit`.

    Attributes:
        law: Name of the law form.
        params: Fitted public parameter values by name (fixed ones included).
        objective: Final objective value.
        n_points: Rows fitted.
        settings: How the fit was made (objective kind, residual space, starts, target column, seed, ...).
        fixed: Names of parameters held fixed.
        data_ranges: ``[min, max]`` of each input column of the fitted data (the law is trusted inside them).
        constants: Fixed numbers of the law form (e.g. ``N_ref``).
        samples: Bootstrap replicates of the public parameters ``(K, P)`` in ``law`` order, or None.
        level: Coverage of the reported intervals (0.95 = central 95%).
        extrapolation: Result of the extrapolation check, when run.
    """

    law: str
    params: dict[str, float]
    objective: float
    n_points: int
    settings: dict = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    data_ranges: dict[str, list[float]] = field(default_factory=dict)
    constants: dict[str, float] = field(default_factory=dict)
    samples: np.ndarray | None = None
    level: float = 0.95
    extrapolation: dict | None = None

    @property
    def form(self) -> Law:
        """The law form object."""
        return get_law(self.law)

    def theta(self) -> np.ndarray:
        """Fitted internal vector ``(P,)``."""
        return self.form.to_internal(self.params)

    def sample_thetas(self) -> np.ndarray | None:
        """Internal vectors of the finite bootstrap replicates ``(K, P)``, or None without bootstrap."""
        if self.samples is None:
            return None
        finite = self.samples[np.all(np.isfinite(self.samples), axis=1)]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.stack([p.internal(finite[:, i]) for i, p in enumerate(self.form.params)], axis=1)

    @property
    def intervals(self) -> dict[str, list[float]] | None:
        """Central ``level`` percentile interval of every parameter over the bootstrap replicates."""
        if self.samples is None:
            return None
        finite = self.samples[np.all(np.isfinite(self.samples), axis=1)]
        tail = 100.0 * (1.0 - self.level) / 2.0
        lower, upper = np.percentile(finite, [tail, 100.0 - tail], axis=0)
        return {name: [float(lo), float(hi)] for name, lo, hi in zip(self.form.names, lower, upper)}

    def to_dict(self) -> dict:
        out = {
            "law": self.law,
            "params": {k: float(v) for k, v in self.params.items()},
            "objective": float(self.objective),
            "n_points": int(self.n_points),
        }
        if self.samples is not None:
            out["intervals"] = self.intervals
            out["level"] = self.level
        out.update(settings=self.settings, fixed=list(self.fixed), data_ranges=self.data_ranges,
                   constants=self.constants)
        if self.extrapolation is not None:
            out["extrapolation"] = self.extrapolation
        if self.samples is not None:
            out["bootstrap_samples"] = [[_json_float(v) for v in row] for row in self.samples]
        return out

    @classmethod
    def from_dict(cls, data: dict, source: str = "fit") -> FitResult:
        """Builds a result from its JSON form.

        Raises:
            InputError: When a key is missing or the law or its parameters do not match.
        """
        for key in ("law", "params", "objective", "n_points"):
            if key not in data:
                raise InputError(f"{source}: missing key {key!r}")
        law = get_law(data["law"])
        missing = [name for name in law.names if name not in data["params"]]
        if missing:
            raise InputError(f"{source}: params lacks {', '.join(missing)} (law {law.name})")
        samples = data.get("bootstrap_samples")
        return cls(
            law=law.name,
            params={name: float(data["params"][name]) for name in law.names},
            objective=float(data["objective"]),
            n_points=int(data["n_points"]),
            settings=dict(data.get("settings", {})),
            fixed=list(data.get("fixed", [])),
            data_ranges={k: list(v) for k, v in data.get("data_ranges", {}).items()},
            constants=dict(data.get("constants", {})),
            samples=None if not samples else np.array(samples, dtype=float),
            level=float(data.get("level", 0.95)),
            extrapolation=data.get("extrapolation"),
        )

    def save(self, path: str | Path) -> None:
        """Writes JSON atomically (a temporary file in the same folder, then a rename)."""
        write_atomic(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FitResult:
        """Reads a fit JSON written by :meth:`save`.

        Raises:
            InputError: When the file is missing, not JSON, or not a fit.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: not a fit (expected a JSON object)")
        return cls.from_dict(data, source=str(path))


def _json_float(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` via a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
