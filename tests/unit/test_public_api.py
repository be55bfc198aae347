"""The package's public API, and what loading it costs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_bluegreen

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", pytest_bluegreen.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(pytest_bluegreen, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = pytest_bluegreen.nope


def test_loading_the_plugin_imports_no_deploy_machinery() -> None:
    """What a pytest run without --bg-* options pays for the installed plugin."""
    probe = (
        "import sys, pytest_bluegreen, pytest_bluegreen.plugin, pytest_bluegreen.fixtures; "
        "heavy = ('docker', 'requests', 'testinfra', 'cryptography', 'prometheus_client', "
        "'yaml', 'tomllib', 'pytest_bluegreen.core.deployment', 'pytest_bluegreen.commands', "
        "'pytest_bluegreen.adapters.engines.compose', 'pytest_bluegreen.reporting.report', "
        "'pytest_bluegreen.core.config', 'pytest_bluegreen.core.state', "
        "'pytest_bluegreen.core.record'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


PUBLIC_MODULES = ("pytest_bluegreen", "pytest_bluegreen.checks", "pytest_bluegreen.gates")


def imported_modules(path: Path) -> list[str]:
    """Every module of the package that ``path`` imports from, as written."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [m for m in found if m.split(".")[0] == "pytest_bluegreen"]


def is_public(module: str) -> bool:
    """The package itself, its checks and its packaged gates; no private (``_``) module."""
    if any(part.startswith("_") for part in module.split(".")):
        return False
    return module == "pytest_bluegreen" or module.startswith(
        tuple(f"{m}." for m in PUBLIC_MODULES[1:]) + PUBLIC_MODULES[1:]
    )


def test_the_suites_use_the_public_api_only() -> None:
    suites = sorted((REPO / "suites").rglob("*.py"))
    assert suites, "no suite found"
    internal = {
        f"{path.relative_to(REPO)}: {module}"
        for path in suites
        for module in imported_modules(path)
        if not is_public(module)
    }
    assert internal == set()


def test_the_packaged_gates_use_the_public_api_and_their_own_helpers_only() -> None:
    gates = sorted((REPO / "pytest_bluegreen" / "gates").glob("*/*.py"))
    assert gates, "no packaged gate found"
    internal = {
        f"{path.relative_to(REPO)}: {module}"
        for path in gates
        for module in imported_modules(path)
        if not is_public(module) and module != "pytest_bluegreen.gates._assertions"
    }
    assert internal == set()


def test_an_internal_import_is_not_public() -> None:
    assert is_public("pytest_bluegreen.checks.latency")
    assert is_public("pytest_bluegreen.gates.migration.test_migration")
    assert not is_public("pytest_bluegreen.core.config")
    assert not is_public("pytest_bluegreen.adapters.engines.compose")
    assert not is_public("pytest_bluegreen.gates._assertions")
