"""Executing a notebook top to bottom with injected parameters, as CI and the quickstart do.

The kernel is this interpreter (a kernelspec written to a private JUPYTER_PATH), so a fresh environment needs
no registered kernel. Parameters go into a cell inserted after the one tagged ``parameters`` (papermill's rule).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from spt.errors import InputError

KERNEL = "spt-python"


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
    import nbformat
    from nbclient import NotebookClient

    notebook = with_parameters(nbformat.read(path, as_version=4), parameters)
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


def save_copies(notebook, name: str, folder: str | Path) -> list[Path]:
    """Writes the executed notebook, and an HTML copy when nbconvert is installed; returns the paths."""
    import nbformat

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.ipynb"]
    nbformat.write(notebook, paths[0])
    if importlib.util.find_spec("nbconvert") is not None:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(notebook)
        paths.append(folder / f"{name}.html")
        paths[-1].write_text(body, encoding="utf-8")
    return paths


def stdout_lines(notebook) -> list[str]:
    """Every line the notebook's code cells printed to stdout, in order."""
    return [line for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
            if output.output_type == "stream" and output.name == "stdout" for line in output.text.splitlines()]
