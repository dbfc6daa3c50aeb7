"""Reading and checking fit tables: every bad cell is reported by column and row before anything is fitted.

Rows are numbered from 1 over the data rows (the CSV header is not a row).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaling_laws.laws.base import Law
from scaling_laws.laws.registry import get_law
from spt.errors import InputError

#: Problems listed before the rest are summarized in one line.
MAX_PROBLEMS = 20
#: Columns whose values must lie in [0, 1].
FRACTION_COLUMNS = ("fraction",)
#: Distinct domain fractions the SPT laws need (their fraction dependence has several parameters).
MIN_FRACTIONS = 3


def read_table(path: str | Path) -> pd.DataFrame:
    """Reads a CSV with every cell as text, so the checks can quote bad cells verbatim.

    Raises:
        InputError: When the file is missing or not a CSV.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({str(exc).strip()})") from None


def resolve_law(name: str, frame: pd.DataFrame) -> Law:
    """The law to fit: ``spt`` (or ``spt-regularized``) becomes the model-size extension ``spt-n`` when ``params``
    has several values."""
    if name in ("spt", "spt-regularized") and "params" in frame.columns:
        sizes = pd.to_numeric(frame["params"], errors="coerce")
        if sizes.nunique(dropna=True) > 1:
            return get_law("spt-n")
    return get_law(name)


def _cell_problem(raw, value: float, column: str, residuals: str, target: str) -> str | None:
    """Why one cell is unusable, or None."""
    text = raw.strip() if isinstance(raw, str) else raw
    if isinstance(text, str) and text == "":
        return "empty"
    if np.isnan(value):
        return "NaN" if not isinstance(text, str) or text.lower() in ("nan", "-nan", "+nan") else (
            f"not a number ({text!r})")
    if not np.isfinite(value):
        return f"not finite ({value})"
    if column in FRACTION_COLUMNS:
        return None if 0.0 <= value <= 1.0 else f"{value:g} is outside [0, 1]"
    if column == target and residuals == "linear":
        return None
    return None if value > 0 else f"{value:g} is not positive"


def check_frame(frame: pd.DataFrame, law: Law, target: str | None, *, residuals: str = "log",
                free_params: int | None = None, source: str = "data") -> pd.DataFrame:
    """Checks a table for a law and returns its needed columns as floats.

    Args:
        frame: The table (text or numeric columns).
        law: The law to fit.
        target: Name of the fitted column (``loss``, ``domain_loss``, ...); None to check inputs only
            (for predictions), which also skips the row-count checks.
        residuals: ``"log"`` needs a positive target; ``"linear"`` accepts any finite one.
        free_params: Parameters being fitted (default: all of the law's); the table needs one more row.
        source: Name of the table in messages (the file path).

    Returns:
        A float DataFrame with the law's input columns and the target, in the original row order.

    Raises:
        InputError: One line per problem: missing columns, bad cells (column and row), too few rows or fractions.
    """
    needed = list(law.inputs) + ([target] if target else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise InputError(f"{source}: missing column{'s' if len(missing) > 1 else ''} {names} "
                         f"(law {law.name} needs {', '.join(needed)})")
    if len(frame) == 0:
        raise InputError(f"{source}: no rows")
    problems: list[str] = []
    numeric = {}
    for column in needed:
        raw = frame[column].reset_index(drop=True)
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        numeric[column] = values
        for row, (cell, value) in enumerate(zip(raw, values), start=1):
            reason = _cell_problem(cell, value, column, residuals, target)
            if reason:
                problems.append(f"column {column!r}, row {row}: {reason}")
    if problems:
        extra = len(problems) - MAX_PROBLEMS
        raise InputError(problems[:MAX_PROBLEMS] + ([f"... and {extra} more bad cells"] if extra > 0 else []))
    table = pd.DataFrame(numeric)
    if target is None:
        return table
    count = free_params if free_params is not None else len(law.params)
    if len(table) < count + 1:
        raise InputError(f"{source}: {len(table)} rows, but law {law.name} fits {count} parameters "
                         f"and needs at least {count + 1} rows")
    if "fraction" in law.inputs:
        distinct = table["fraction"].nunique()
        if distinct < MIN_FRACTIONS:
            raise InputError(f"column 'fraction': {distinct} distinct value{'s' if distinct != 1 else ''}, "
                             f"law {law.name} needs at least {MIN_FRACTIONS}")
    return table


def law_inputs(table: pd.DataFrame, law: Law) -> dict[str, np.ndarray]:
    """The law's input columns as float arrays."""
    return {column: table[column].to_numpy(dtype=float) for column in law.inputs}


def summarize(table: pd.DataFrame) -> list[str]:
    """One line per column: count, min and max (for ``--dry-run``)."""
    lines = [f"{len(table)} rows"]
    for column in table.columns:
        values = table[column].to_numpy(dtype=float)
        lines.append(f"  {column}: min {values.min():.6g}, max {values.max():.6g}, "
                     f"{len(np.unique(values))} distinct")
    return lines


def data_caveats(table: pd.DataFrame, law: Law, target: str) -> list[str]:
    """What the rows leave a fit unsure of, one line each: rows that repeat another exactly (each counts again,
    and narrows the band as if it were a new measurement), and a model-size law fitted on one model size (its
    size terms are then set by the bounds, not the data)."""
    lines = []
    columns = [*law.inputs, target]
    repeated = int(table.duplicated(subset=columns).sum())
    if repeated:
        lines.append(f"{repeated} row{'s' if repeated > 1 else ''} repeat{'' if repeated > 1 else 's'} another row "
                     f"exactly ({', '.join(columns)}): each counts again in the fit and narrows its band as if it "
                     f"were a new measurement; drop the copies")
    if "params" in law.inputs and pd.to_numeric(table["params"]).nunique() < 2:
        lines.append(f"every row has the same model size: the model-size terms of law {law.name} are not "
                     f"determined by these data (fit runs of several sizes)")
    return lines
