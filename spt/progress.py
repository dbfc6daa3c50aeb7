"""Progress of long stages, the same way everywhere: a tqdm bar with rate and ETA on a terminal, and plain lines
every few seconds when stderr is a file or a pipe (logs, CI, a sweep cell's log), and a last line with the time
taken (a stage that ends within the first interval prints nothing)::

    build domain, general: 1,234,000/5,000,000 tokens (25%), 310,000/s, ETA 12 s
    build domain, general: 5,000,000/5,000,000 tokens (100%), 305,000/s, done in 16 s

Environment:
    ``SPT_PROGRESS``: ``0`` turns progress off (nothing printed); anything else, or unset, leaves it on.
    ``SPT_PROGRESS_SECONDS``: seconds between plain lines (default 30; ``0`` prints one per update).

Only the standard library and tqdm are used: the generate environment (vLLM) imports this too.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TextIO, TypeVar

#: Seconds between plain progress lines when ``SPT_PROGRESS_SECONDS`` is unset.
DEFAULT_SECONDS = 30.0

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("SPT_PROGRESS", "1") != "0"


def line_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("SPT_PROGRESS_SECONDS", DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


def duration(seconds: float) -> str:
    """``12 s``, ``3 min 20 s``, ``2 h 05 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


class Progress:
    """A counter of work done toward ``total`` (None when unknown) that shows itself as a bar or as lines.

    Args:
        desc: what is counted, e.g. ``corpus domain``.
        total: units expected; None prints counts and rates without a share or an ETA.
        unit: the unit's plural name, e.g. ``docs``, ``tokens``, ``cells``.
        initial: units already done (a resumed run).
        show: True/False forces progress on/off; None follows ``SPT_PROGRESS``.
        stream: where to write (default stderr); a terminal gets a tqdm bar, anything else plain lines.
    """

    def __init__(self, desc: str, total: int | None, unit: str, initial: int = 0, show: bool | None = None,
                 stream: TextIO | None = None):
        self.desc, self.total, self.unit = desc, total, unit
        self.done = self.initial = initial
        self.stream = stream or sys.stderr
        self.show = enabled() if show is None else show
        self.started = self.last_line = time.monotonic()
        self.bar = None
        self.postfix = ""
        self.printed = False
        if self.show and _is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit.rstrip("s") or unit,
                            unit_scale=True, file=self.stream, dynamic_ncols=True)

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif self.show and time.monotonic() - self.last_line >= line_seconds():
            self._line()

    def set_postfix(self, **values) -> None:
        """Extra counts shown after the rate (``rows=12, tokens=3400``)."""
        self.postfix = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in values.items())
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=False)

    def line(self, final: bool = False) -> str:
        """The plain progress line: done/total, share, rate and ETA (or the time taken, when ``final``)."""
        elapsed = time.monotonic() - self.started
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.done:,}/{self.total:,} {self.unit}" if self.total is not None else f"{self.done:,} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts.append(f"{_rate(rate)}/s")
        if final:
            parts.append(f"done in {duration(elapsed)}")
        elif self.total is not None and rate > 0:
            parts.append(f"ETA {duration((self.total - self.done) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return f"{self.desc}: " + ", ".join(parts)

    def _line(self, final: bool = False) -> None:
        print(self.line(final), file=self.stream, flush=True)
        self.last_line, self.printed = time.monotonic(), True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.show and self.printed:  # a stage quicker than one interval stays silent
            self._line(final=True)
        self.show = False  # closing twice prints once

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[T], desc: str, unit: str, total: int | None = None, show: bool | None = None) -> Iterator[T]:
    """Yields ``items``, counting one unit each."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(desc, total, unit, show=show) as progress:
        for item in items:
            yield item
            progress.update(1)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
