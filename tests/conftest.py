"""Shared fixtures. Tests run in the train environment; generate-stage tests reach vLLM through spt's own
environment dispatch, exactly as users do."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_cli(capsys):
    """Runs ``spt ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from spt.cli import main

    def run(*args: str):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def spt_bin() -> str:
    """The installed console script of the running environment."""
    return str(Path(sys.executable).parent / "spt")


def tree(path: Path) -> list[str]:
    """Every path under ``path`` (empty when it does not exist): to assert that nothing was written."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    # Two cores: keep BLAS/torch from oversubscribing when tests start subprocesses.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
