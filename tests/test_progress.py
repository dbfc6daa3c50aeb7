"""Progress of long stages: plain lines with counts, share, rate and ETA when stderr is not a terminal."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

#: One plain progress line: ``<stage>: <done>/<total> <unit> (<share>%), <rate>/s, ETA <time>`` (or ``done in``).
LINE = re.compile(r"^(?P<stage>[^:]+): (?P<done>[\d,]+)/(?P<total>[\d,]+) (?P<unit>\w+) \((?P<share>\d+)%\), "
                  r"(?P<rate>[\d,.e+]+)/s, (?:ETA|done in) (?P<time>\d+ s|\d+ min \d\d s|\d+ h \d\d min)$")


def test_a_real_stage_prints_plain_lines_when_stderr_is_a_pipe(tmp_path):
    env = {**os.environ, "SPT_PROGRESS_SECONDS": "0", "PYTHONPATH": str(REPO)}
    env.pop("SPT_PROGRESS", None)
    proc = subprocess.run([sys.executable, "-m", "cli.main", "corpora", str(REPO / "configs/corpora/quickstart.yaml"),
                           f"output_dir={tmp_path / 'corpora'}", "domain.max_documents=12",
                           "general.max_documents=20"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [LINE.match(line) for line in proc.stderr.splitlines() if line.startswith("corpus domain:")]
    assert all(lines) and "\r" not in proc.stderr  # plain lines, no bar redrawn in place
    assert [int(m["done"]) for m in lines] == list(range(1, 13)) + [12]  # one per document, then the final line
    assert {m["total"] for m in lines} == {"12"} and {m["unit"] for m in lines} == {"docs"}
    assert [int(m["share"]) for m in lines][-1] == 100 and lines[-1].group(0).split(", ")[-1].startswith("done in")
    assert all(", ETA " in m.group(0) for m in lines[:-1])
    assert any(line.startswith("corpus general: 20/20 docs (100%)") for line in proc.stderr.splitlines())


def test_lines_come_at_most_every_interval_and_a_quick_stage_is_silent(monkeypatch):
    from spt.progress import Progress

    monkeypatch.setenv("SPT_PROGRESS_SECONDS", "3600")
    stream = io.StringIO()
    with Progress("build domain", 5000, "tokens", stream=stream) as progress:
        for _ in range(5):
            progress.update(1000)
    assert stream.getvalue() == ""  # done within the hour: no line at all
    monkeypatch.setenv("SPT_PROGRESS_SECONDS", "0")
    with Progress("build domain", 5000, "tokens", stream=stream) as progress:
        progress.update(2500)
        progress.update(2500)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and all(LINE.match(line) for line in lines)
    assert lines[0].startswith("build domain: 2,500/5,000 tokens (50%), ") and ", ETA " in lines[0]
    assert lines[2].startswith("build domain: 5,000/5,000 tokens (100%), ") and ", done in " in lines[2]


def test_unknown_total_a_resumed_count_and_postfix(monkeypatch):
    from spt.progress import Progress

    monkeypatch.setenv("SPT_PROGRESS_SECONDS", "0")
    stream = io.StringIO()
    progress = Progress("parquet of x", None, "docs", stream=stream)
    progress.update(7)
    progress.close()
    progress.close()  # closing twice prints once
    assert re.fullmatch(r"parquet of x: 7 docs, [\d.e+,]+/s\nparquet of x: 7 docs, [\d.e+,]+/s, done in \d+ s\n",
                        stream.getvalue())
    stream = io.StringIO()
    progress = Progress("train", 100, "tokens", initial=40, stream=stream)
    progress.set_postfix(rows=3)
    progress.update(10)
    assert stream.getvalue().startswith("train: 50/100 tokens (50%), ") and stream.getvalue().strip().endswith(
        "rows 3")


def test_spt_progress_0_prints_nothing(monkeypatch):
    from spt.progress import Progress, track

    monkeypatch.setenv("SPT_PROGRESS", "0")
    monkeypatch.setenv("SPT_PROGRESS_SECONDS", "0")
    stream = io.StringIO()
    with Progress("x", 3, "units", stream=stream) as progress:
        progress.update(3)
    assert stream.getvalue() == ""
    assert list(track([1, 2], "y", "units")) == [1, 2]


@pytest.mark.parametrize("seconds,text", [(0.4, "0 s"), (12, "12 s"), (200, "3 min 20 s"), (7500, "2 h 05 min")])
def test_durations(seconds, text):
    from spt.progress import duration

    assert duration(seconds) == text
