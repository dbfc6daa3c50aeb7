"""A fitted law as data: parameters, objective, bootstrap samples; saved to and loaded from JSON.

Fit JSON is read back strictly: a file written by hand (say, a paper's published constants) with a missing,
null or text field gets one line naming the field and the rule, not a traceback.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scaling_laws.fitting.intervals import OUTSIDE_CAUSE, outside, percentile_interval
from scaling_laws.laws.base import Law
from scaling_laws.laws.registry import LAWS, get_law
from spt import storage
from spt.errors import InputError


@dataclass
class FitResult:
    """The outcome of :func:`scaling_laws.fitting.fit.fit` or :func:`scaling_laws.fitting.spt.fit_spt`.

    Attributes:
        law: Name of the law form.
        params: Fitted public parameter values by name (fixed ones included).
        objective: Final objective value (for an SPT fit of the two halves: the sum of theirs).
        n_points: Rows fitted.
        settings: How the fit was made (objective kind, residual space, starts, target column, seed, what was
            fitted, bootstrap method, which evaluations were used, ...).
        fixed: Names of parameters held fixed.
        data_ranges: ``[min, max]`` of each input column of the fitted data (the law is trusted inside them).
        constants: Fixed numbers of the law form (e.g. ``N_ref``).
        samples: Bootstrap replicates of the public parameters ``(K, P)`` in ``law`` order, or None.
        level: Coverage of the reported intervals (0.95 = central 95%).
        extrapolation: Result of the extrapolation check, when run.
        noise: The noise models the bootstrap drew from, by fitted quantity (see :mod:`scaling_laws.fitting.noise`).
        components: The halves of an SPT fit (``train``, ``gap``: their parameters and objectives).
        decision: What decisions need besides the law: measured curves per fraction, fine-tune results
            (see :mod:`scaling_laws.decision.measured` and :mod:`scaling_laws.decision.finetune`).
        caveats: Limits of the data behind the fit, one plain line each.
        validation: Held-out prediction errors, when checked (see :mod:`scaling_laws.decision.validation`).
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
    noise: dict | None = None
    components: dict | None = None
    decision: dict | None = None
    caveats: list[str] = field(default_factory=list)
    validation: dict | None = None

    @property
    def form(self) -> Law:
        """The law form object."""
        return get_law(self.law, self.constants)

    def theta(self) -> np.ndarray:
        """Fitted internal vector ``(P,)``."""
        return self.form.to_internal(self.params)

    def sample_thetas(self) -> np.ndarray | None:
        """Internal vectors of the finite bootstrap replicates ``(K, P)``, or None without bootstrap."""
        if self.samples is None:
            return None
        finite = self.samples[np.all(np.isfinite(self.samples), axis=1)]
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.form.internal_array(finite)

    @property
    def intervals(self) -> dict[str, list[float]] | None:
        """Central ``level`` interval of every parameter over the bootstrap replicates, as they give it (the
        fitted value may lie outside: :meth:`outside_intervals`, :mod:`scaling_laws.fitting.intervals`)."""
        if self.samples is None:
            return None
        finite = self.samples[np.all(np.isfinite(self.samples), axis=1)]
        out = {}
        for i, name in enumerate(self.form.names):
            interval = percentile_interval(finite[:, i], self.level)
            out[name] = list(interval) if interval else [float("nan"), float("nan")]
        return out

    def outside_intervals(self) -> list[str]:
        """Free parameters whose fitted value lies outside its own bootstrap interval (see
        :mod:`scaling_laws.fitting.intervals`)."""
        intervals = self.intervals or {}
        return [name for name, pair in intervals.items()
                if name not in self.fixed and outside(self.params[name], pair)]

    def to_dict(self) -> dict:
        out = {"law": self.law, "params": {k: float(v) for k, v in self.params.items()},
               "objective": float(self.objective), "n_points": int(self.n_points)}
        if self.samples is not None:
            out["intervals"] = {k: [_json_float(v) for v in pair] for k, pair in self.intervals.items()}
            out["level"] = self.level
        out.update(settings=self.settings, fixed=list(self.fixed), data_ranges=self.data_ranges,
                   constants=self.constants, caveats=list(self.caveats))
        for key in ("extrapolation", "noise", "components", "decision", "validation"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.samples is not None:
            out["bootstrap_samples"] = [[_json_float(v) for v in row] for row in self.samples]
        return out

    @classmethod
    def from_dict(cls, data: dict, source: str = "fit") -> FitResult:
        """Builds a result from its JSON form, checking every field it uses.

        Raises:
            InputError: One line naming the first bad field: missing, null, text where a number belongs, an
                unknown law, parameters that do not match the law.
        """
        if not isinstance(data, dict):
            raise InputError(f"{source}: not a fit (expected a JSON object)")
        for key in ("law", "params", "objective", "n_points"):
            if key not in data:
                raise InputError(f"{source}: missing key {key!r}")
        if not isinstance(data["law"], str) or data["law"] not in LAWS:
            raise InputError(f"{source}: law={data['law']!r}: expected one of {', '.join(LAWS)}")
        law = get_law(data["law"])
        params = data["params"]
        if not isinstance(params, dict):
            raise InputError(f"{source}: params: expected an object of parameter values, got {_kind(params)}")
        missing = [name for name in law.names if name not in params]
        if missing:
            raise InputError(f"{source}: params lacks {', '.join(missing)} (law {law.name})")
        values = {name: _number(params[name], f"params.{name}", source) for name in law.names}
        objective = _number(data["objective"], "objective", source, hint=" (the fit's final objective value; "
                            "write 0 for parameters set by hand)")
        n_points = _number(data["n_points"], "n_points", source)
        if n_points < 0 or n_points != int(n_points):
            raise InputError(f"{source}: n_points={data['n_points']!r}: must be a whole number >= 0")
        level = _number(data.get("level", 0.95), "level", source)
        if not 0.0 < level < 1.0:
            raise InputError(f"{source}: level={level:g}: must be in (0, 1)")
        return cls(
            law=law.name, params=values, objective=objective, n_points=int(n_points),
            settings=_mapping(data.get("settings"), "settings", source),
            fixed=[str(v) for v in _list(data.get("fixed"), "fixed", source)],
            data_ranges=_ranges(data.get("data_ranges"), source),
            constants={k: _number(v, f"constants.{k}", source)
                       for k, v in _mapping(data.get("constants"), "constants", source).items()},
            samples=_samples(data.get("bootstrap_samples"), len(law.names), source), level=level,
            extrapolation=data.get("extrapolation"), noise=data.get("noise"),
            components=data.get("components"), decision=_decision(data.get("decision"), source),
            caveats=[str(v) for v in _list(data.get("caveats"), "caveats", source)],
            validation=data.get("validation"),
        )

    def save(self, path: str | Path) -> None:
        """Writes JSON atomically to a local path or an ``s3://`` URL (see :func:`write_atomic`)."""
        write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FitResult:
        """Reads a fit JSON written by :meth:`save` (or by hand), from a local path or an ``s3://`` URL.

        Raises:
            InputError: When the file is missing, not JSON, or not a fit.
        """
        location = storage.check(str(path), "fit")
        try:
            text = storage.read_text(location) if storage.is_file(location) else None
        except UnicodeDecodeError as exc:
            raise InputError(f"{location}: not JSON ({exc})") from None
        if text is None:
            raise InputError(f"{location}: no such file")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{location}: not JSON ({exc})") from None
        return cls.from_dict(data, source=location)


#: Share of bootstrap refits that may fail (or stop at the iteration limit) before the caveats say so.
MAX_FAILED_SHARE = 0.10


def bootstrap_caveats(result: FitResult) -> list[str]:
    """What the bootstrap of a fit says about itself: refits that failed or did not converge (more than
    :data:`MAX_FAILED_SHARE`), and fitted values outside their own intervals."""
    lines = []
    refits = result.settings.get("bootstrap_refits") or {}
    replicates, total = int(refits.get("replicates", 0)), int(refits.get("refits", 0))
    failed, unconverged = int(refits.get("failed", 0)), int(refits.get("unconverged", 0))
    if replicates and failed > MAX_FAILED_SHARE * replicates:
        lines.append(f"{failed} of {replicates} bootstrap refits failed (no finite fit from any start) and are left "
                     f"out of the intervals: more than {100 * MAX_FAILED_SHARE:g}%, so the band describes only the "
                     f"replicates the law could fit and is likely too narrow")
    if total and unconverged > MAX_FAILED_SHARE * total:
        lines.append(f"{unconverged} of {total} bootstrap refits stopped at the iteration limit before converging "
                     f"(kept in the intervals): more than {100 * MAX_FAILED_SHARE:g}%, so the band carries the "
                     f"optimizer's error besides the data's")
    names = result.outside_intervals()
    if names:
        intervals = result.intervals
        listed = ", ".join(f"{name} {result.params[name]:.4g} [{intervals[name][0]:.4g}, {intervals[name][1]:.4g}]"
                           for name in names)
        lines.append(f"fitted values outside their own {100 * result.level:g}% bootstrap intervals: {listed}: "
                     f"{OUTSIDE_CAUSE}")
    return lines


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _number(value, name: str, source: str, hint: str = "") -> float:
    """A finite JSON number (``bool`` and text are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        shown = "null" if value is None else json.dumps(value)
        raise InputError(f"{source}: {name}={shown}: must be a finite number{hint}")
    return float(value)


def _mapping(value, name: str, source: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{source}: {name}: expected an object, got {_kind(value)}")
    return dict(value)


def _list(value, name: str, source: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"{source}: {name}: expected a list, got {_kind(value)}")
    return value


def _ranges(value, source: str) -> dict[str, list[float]]:
    ranges = {}
    for key, pair in _mapping(value, "data_ranges", source).items():
        if not isinstance(pair, list) or len(pair) != 2:
            raise InputError(f"{source}: data_ranges.{key}: expected [min, max], got {json.dumps(pair)}")
        low, high = (_number(v, f"data_ranges.{key}", source) for v in pair)
        if low > high:
            raise InputError(f"{source}: data_ranges.{key}=[{low:g}, {high:g}]: min is above max")
        ranges[key] = [low, high]
    return ranges


def _samples(value, width: int, source: str) -> np.ndarray | None:
    rows = _list(value, "bootstrap_samples", source)
    if not rows:
        return None
    out = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise InputError(f"{source}: bootstrap_samples[{i}]: expected a list of {width} numbers")
        for j, cell in enumerate(row):
            if cell is not None:  # null marks a failed refit
                out[i, j] = _number(cell, f"bootstrap_samples[{i}][{j}]", source)
    return out


def _decision(value, source: str) -> dict | None:
    """The parts of ``decision`` that decisions read, checked: swept fractions, fine-tuned runs, multipliers."""
    if value is None:
        return None
    decision = _mapping(value, "decision", source)
    for i, f in enumerate(_list(decision.get("fractions"), "decision.fractions", source)):
        _number(f, f"decision.fractions[{i}]", source)
    for i, run in enumerate(_list(decision.get("finetune"), "decision.finetune", source)):
        run = _mapping(run, f"decision.finetune[{i}]", source)
        for key in ("fraction", "tokens", "finetune_loss"):
            _number(run.get(key), f"decision.finetune[{i}].{key}", source)
    for i, item in enumerate(_list(decision.get("measured"), "decision.measured", source)):
        item = _mapping(item, f"decision.measured[{i}]", source)
        _number(item.get("fraction"), f"decision.measured[{i}].fraction", source)
        if item.get("reached") not in ("yes", "no", "before the first evaluation"):
            raise InputError(f"{source}: decision.measured[{i}].reached={json.dumps(item.get('reached'))}: "
                             f"expected yes, no or before the first evaluation")
        if item["reached"] != "no":
            _number(item.get("value"), f"decision.measured[{i}].value", source)
    return decision


def _json_float(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def write_atomic(path: str | Path, text: str) -> None:
    """Writes ``text`` to a local path (a temporary file and a rename) or an ``s3://`` URL (one upload), so
    readers never see half a file."""
    storage.write_text(str(path), text)
