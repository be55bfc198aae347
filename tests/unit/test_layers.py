"""The layers hold: the core imports no adapter, no check, no reporting and no heavy library;
no two modules of the package import each other."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_bluegreen.core

CORE_MODULES = sorted(
    f"pytest_bluegreen.core.{m.name}" for m in pkgutil.iter_modules(pytest_bluegreen.core.__path__)
)
OUTSIDE_THE_CORE = (
    "pytest_bluegreen.adapters",
    "pytest_bluegreen.checks",
    "pytest_bluegreen.reporting",
    "pytest_bluegreen.plugin",
    "pytest_bluegreen.commands",
    "docker",
    "requests",
    "locust",
    "testinfra",
    "pytest",
)


def test_the_core_has_the_modules_the_deployment_needs() -> None:
    assert {"pytest_bluegreen.core.deployment", "pytest_bluegreen.core.ports"} <= set(CORE_MODULES)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_a_core_module_imports_nothing_outside_the_core(module: str) -> None:
    code = (
        f"import sys, {module}; outside = {OUTSIDE_THE_CORE!r}; "
        "print('\\n'.join(sorted(m for m in sys.modules "
        "if any(m == o or m.startswith(o + '.') for o in outside))))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert found == [], f"{module} pulls in {found}"


PACKAGE = Path(pytest_bluegreen.core.__file__).resolve().parents[1]


def package_imports(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports, wherever in its code.

    Imports inside functions and under ``TYPE_CHECKING`` count too: a circle that only a lazy
    import hides is still two modules that cannot be read or moved apart.
    """
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {module: set() for module in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                target = owner(name) if name.startswith("pytest_bluegreen") else None
                if target is not None and target != module:
                    graph[module].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_two_modules_of_the_package_import_each_other() -> None:
    graph = package_imports()
    assert "pytest_bluegreen.adapters.engines.compose" in graph  # the package was read
    assert circles(graph) == []


def test_a_circle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
