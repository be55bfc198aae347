"""The package's public API, and what loading it costs."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pytest_bluegreen


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
