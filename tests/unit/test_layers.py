"""The layers hold: the core imports no adapter, no check, no reporting and no heavy library."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

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
