"""Executing a notebook top to bottom with injected parameters, as CI and the quickstart do.

The kernel is this interpreter (a kernelspec written to a private JUPYTER_PATH), so a fresh environment needs
no registered kernel. Parameters go into a cell inserted after the one tagged ``parameters`` (papermill's rule).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from spt import storage
from spt.errors import InputError

KERNEL = "spt-python"


def load_notebook(path: str | Path):
    """Reads a notebook file.

    Raises:
        InputError: no such file, or not a readable notebook.
    """
    import nbformat

    if not Path(path).is_file():
        raise InputError(f"{path}: no such notebook")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises JSON, validation and encoding errors of several types
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable notebook ({reason[:200]})") from None


def parameter_names(notebook) -> list[str]:
    """Names the cell tagged ``parameters`` assigns, in order.

    Raises:
        InputError: not exactly one such cell, or it is not valid Python.
    """
    cells = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    if len(cells) != 1:
        raise InputError(f"the notebook needs exactly one cell tagged 'parameters', it has {len(cells)}")
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError as exc:
        raise InputError(f"the notebook's parameters cell is not valid Python ({exc.msg}, line {exc.lineno})") from None
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def check_parameters(notebook, values: dict[str, Any]) -> None:
    """Every given parameter must be one the parameters cell sets (a typo would otherwise be ignored).

    Raises:
        InputError: one line per unknown name.
    """
    known = parameter_names(notebook)
    unknown = [name for name in values if name not in known]
    if unknown:
        raise InputError([f"-p {name}: the notebook has no such parameter (its parameters: {', '.join(known)})"
                          for name in unknown])


def with_parameters(notebook, values: dict[str, Any]):
    """Inserts a cell assigning ``values`` after the cell tagged ``parameters``."""
    from nbformat.v4 import new_code_cell

    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise InputError(f"the notebook needs exactly one cell tagged 'parameters', it has {len(tagged)}")
    source = "# Injected parameters\n" + "\n".join(f"{name} = {value!r}" for name, value in values.items())
    notebook.cells.insert(tagged[0] + 1, new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    return notebook


def _kernel_env(root: Path) -> dict[str, str]:
    spec = root / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "spt (this interpreter)", "language": "python",
    }))
    return {"JUPYTER_PATH": str(root / "jupyter"), "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "1", "IPYTHONDIR": str(root / "ipython")}


def execute_notebook(path: str | Path, parameters: dict[str, Any], workdir: str | Path, timeout_seconds: int = 900):
    """Runs the notebook with ``parameters`` in ``workdir``; returns the executed notebook node.

    Raises:
        nbclient.exceptions.CellExecutionError: when a cell fails (its traceback is in the message).
    """
    from nbclient import NotebookClient

    notebook = with_parameters(load_notebook(path), parameters)
    with tempfile.TemporaryDirectory(prefix="spt-kernel-") as tmp:
        saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "JUPYTER_RUNTIME_DIR", "JUPYTER_PLATFORM_DIRS",
                                               "IPYTHONDIR")}
        os.environ.update(_kernel_env(Path(tmp)))
        try:
            NotebookClient(notebook, kernel_name=KERNEL, timeout=timeout_seconds,
                           resources={"metadata": {"path": str(workdir)}}).execute()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return notebook


def save_copies(notebook, name: str, folder: str) -> list[str]:
    """Writes the executed notebook, and an HTML copy when nbconvert is installed, to a local or ``s3://``
    folder (through :mod:`spt.storage`); returns their locations."""
    import nbformat

    locations = [storage.join(str(folder), f"{name}.ipynb")]
    storage.write_text(locations[0], nbformat.writes(notebook))
    if importlib.util.find_spec("nbconvert") is not None:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(notebook)
        locations.append(storage.join(str(folder), f"{name}.html"))
        storage.write_text(locations[-1], body)
    return locations


def stdout_lines(notebook) -> list[str]:
    """Every line the notebook's code cells printed to stdout, in order."""
    return [line for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
            if output.output_type == "stream" and output.name == "stdout" for line in output.text.splitlines()]
