"""The package layering holds in the code itself: read from the import statements of every module.

The product is four packages run as a pipeline, ``training`` -> ``export`` -> ``calibration``,
all of them running images through ``edge`` (the line-side runtime). A stage may import the
stages before it and ``edge``; ``edge`` imports none of them (a line PC has no torch), and
``studies`` (sweeps and trade-off curves) may import all four while none imports it. Inside
``edge`` the modules import each other without a cycle, and no module grows past 400 lines. The
imports are read with :mod:`ast` (every ``import`` in a module, in functions and under
``TYPE_CHECKING`` too), so the check needs nothing installed and no module is executed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ("training", "export", "calibration")  # in the order the stages run
RUNTIME = "edge"
STUDIES = "studies"
PACKAGES = (*PIPELINE, RUNTIME, STUDIES)
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports (``from a.b import c`` counts ``a.b`` and, if a module, ``a.b.c``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def allowed_packages(package: str) -> set[str]:
    """The other packages ``package`` may import."""
    if package == STUDIES:
        return {*PIPELINE, RUNTIME}
    if package == RUNTIME:
        return set()
    return {*PIPELINE[: PIPELINE.index(package)], RUNTIME}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target):], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_every_package_is_found_with_its_modules():
    for package in PACKAGES:
        assert package in MODULES, f"{package}/__init__.py missing"
    assert len([name for name in MODULES if name.startswith(f"{RUNTIME}.")]) > 20


def test_edge_modules_import_each_other_without_a_cycle():
    edge = {name: {target for target in targets if target.split(".")[0] == RUNTIME}
            for name, targets in GRAPH.items() if name.split(".")[0] == RUNTIME}
    cycle = find_cycle(edge)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_the_packages_below_it(package):
    wrong = sorted(f"{name} imports {target}" for name, targets in GRAPH.items() if name.split(".")[0] == package
                   for target in targets
                   if target.split(".")[0] != package and target.split(".")[0] not in allowed_packages(package))
    assert wrong == [], f"{package} may import only {sorted(allowed_packages(package))}"


def test_the_layers_read_as_documented():
    assert allowed_packages("training") == {"edge"}
    assert allowed_packages("export") == {"training", "edge"}
    assert allowed_packages("calibration") == {"training", "export", "edge"}
    assert all(STUDIES not in allowed_packages(package) for package in PACKAGES)


def test_no_module_is_over_400_lines():
    long = {str(path.relative_to(ROOT)): n for path in MODULES.values()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines (split them by concern)"
