"""The code's shape, checked: the layers import only downward, no file imports itself back through others, and
every first-party import inside a function says why it is there (an expensive or optional import).

Layers, top to bottom (README, Layout): ``cli`` > ``sweeps`` > ``training`` | ``scaling_laws`` > ``pipelines``
> ``spt``. ``training`` may import ``pipelines``; ``scaling_laws`` only ``spt``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: What each package may import besides itself.
ALLOWED = {
    "spt": set(),
    "pipelines": {"spt"},
    "training": {"spt", "pipelines"},
    "scaling_laws": {"spt"},
    "sweeps": {"spt", "pipelines", "training", "scaling_laws"},
    "cli": {"spt", "pipelines", "training", "scaling_laws", "sweeps"},
}
#: A comment on an import inside a function must say which of these it is.
REASONS = ("expensive", "optional")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """The first-party modules a file imports: (module, line, inside a function)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, child.lineno, in_function))
                # ``from package import module`` imports the module too.
                found.extend((f"{child.module}.{alias.name}", child.lineno, in_function) for alias in child.names)
            visit(child, nested)

    visit(tree, False)
    return [(name, line, inside) for name, line, inside in found if name.split(".")[0] in ALLOWED]


def first_party_files(root: Path = REPO) -> dict[str, Path]:
    return {module_name(path): path for package in ALLOWED for path in sorted((root / package).rglob("*.py"))}


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports (a name that is a package's attribute maps to the package)."""
    graph = {}
    for module, path in files.items():
        targets = set()
        for name, _, _ in imports_of(path):
            while name not in files and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in files and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def upward_imports(files: dict[str, Path]) -> list[str]:
    problems = {}
    for module, path in files.items():
        package = module.split(".")[0]
        for name, line, _ in imports_of(path):
            target = name.split(".")[0]
            if target != package and target not in ALLOWED[package]:
                # one line per import statement: the module it names comes first
                problems.setdefault((str(path), line), f"{path.relative_to(REPO)}:{line}: {package} imports {name} "
                                                       f"(a layer above it)")
    return list(problems.values())


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def unexplained_local_imports(files: dict[str, Path]) -> list[str]:
    problems = {}
    for module, path in files.items():
        lines = path.read_text().splitlines()
        for name, line, inside in imports_of(path):
            if not inside:
                continue
            said = lines[line - 1] + " " + (lines[line - 2] if line > 1 else "")
            if "#" not in said or not any(reason in said.split("#", 1)[1] for reason in REASONS):
                problems.setdefault((str(path), line), f"{path.relative_to(REPO)}:{line}: import of {name} inside a "
                                                       f"function without a comment saying it is "
                                                       f"{' or '.join(REASONS)}")
    return sorted(problems.values())


def test_no_layer_imports_a_layer_above_it():
    assert upward_imports(first_party_files()) == []


def test_no_import_cycles_between_files():
    assert cycles(import_graph(first_party_files())) == []


def test_no_import_cycles_between_packages():
    graph = import_graph(first_party_files())
    packages = {}
    for module, targets in graph.items():
        packages.setdefault(module.split(".")[0], set()).update(t.split(".")[0] for t in targets)
    assert cycles({p: t - {p} for p, t in packages.items()}) == []


def test_imports_inside_functions_say_why():
    assert unexplained_local_imports(first_party_files()) == []


def test_the_check_fails_on_an_upward_import_and_a_cycle(tmp_path):
    """The contract can fail: a planted upward import and a planted cycle are both found."""
    for package in ALLOWED:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "scaling_laws" / "fit.py").write_text("from training.trainer import build\n")
    (tmp_path / "training" / "trainer.py").write_text("from training.data import loader\n")
    (tmp_path / "training" / "data.py").write_text("def loader():\n    from training.trainer import build\n")
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        files = first_party_files(tmp_path)
        assert upward_imports(files) == ["scaling_laws/fit.py:1: scaling_laws imports training.trainer (a layer "
                                         "above it)"]
        assert cycles(import_graph(files)) == [["training.data", "training.trainer"]]
        assert unexplained_local_imports(files) == ["training/data.py:2: import of training.trainer inside a "
                                                    "function without a comment saying it is expensive or optional"]
    finally:
        REPO = saved


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_every_package_is_in_the_layout_of_readme(package):
    layout = (REPO / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    assert re.search(rf"^[ │├└─]*{package}/ ", layout, flags=re.M), f"README's Layout does not draw {package}/"
