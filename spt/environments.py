"""Which Python environment a stage needs, and running it there.

spt has two environments (see README): ``train`` (Composer, Streaming, Ray Train; the default) and ``generate``
(vLLM). A stage declares the one it needs; when the current interpreter lacks it, the stage is re-run with the
other environment's interpreter, so users never call the second environment by hand. On a Ray cluster the same
choice is a runtime env with ``py_executable`` (see :func:`ray_runtime_env`).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from spt.errors import InputError

#: A module that only that environment has.
_MARKER_MODULE = {"train": "composer", "generate": "vllm"}
_ALWAYS = "any"


def repo_root() -> Path:
    """The source checkout spt runs from (spt is installed editable by scripts/setup.sh)."""
    return Path(__file__).resolve().parents[1]


def is_current(environment: str) -> bool:
    """True when this interpreter can run a stage that needs ``environment``."""
    if environment == _ALWAYS:
        return True
    return importlib.util.find_spec(_MARKER_MODULE[environment]) is not None


def python_for(environment: str) -> Path:
    """The interpreter of an environment: ``$SPT_<ENV>_PYTHON`` or ``.venv/<env>/bin/python`` in the checkout."""
    override = os.environ.get(f"SPT_{environment.upper()}_PYTHON")
    path = Path(override) if override else repo_root() / ".venv" / environment / "bin" / "python"
    if not path.exists():
        raise InputError(
            f"the {environment} environment is not built ({path} is missing): run scripts/setup.sh {environment}"
        )
    return path


def run_in(environment: str, args: list[str]) -> int:
    """Runs ``python ARGS`` in another environment, streaming its output; returns its exit code."""
    try:
        python = python_for(environment)
    except InputError as exc:
        print(f"error: {exc.problems[0]}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["SPT_PARENT_ENVIRONMENT"] = "train" if is_current("train") else "generate"
    print(f"spt: running in the {environment} environment ({python})", file=sys.stderr, flush=True)
    return subprocess.run([str(python), *args], env=env).returncode


def ray_runtime_env(environment: str, py_executable: str | None = None, env_vars: dict | None = None) -> dict:
    """A Ray ``runtime_env`` that runs tasks/actors with the interpreter of ``environment``.

    On one machine the default is the local environment's interpreter; on a cluster, pass the path of the
    interpreter in the worker image (``ray.py_executable`` in the stage's YAML).
    """
    return {
        "py_executable": py_executable or str(python_for(environment)),
        "env_vars": dict(env_vars or {}),
    }
