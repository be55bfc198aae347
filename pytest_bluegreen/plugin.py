"""The pytest plugin: options in the ``bluegreen`` group and fixtures for the stack's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_bluegreen.config import StackConfig, load_config
from pytest_bluegreen.errors import ConfigError


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bluegreen", "blue-green deployment")
    group.addoption(
        "--bg-config",
        type=Path,
        default=None,
        help="settings file (default: [tool.bluegreen] in pyproject.toml, else bluegreen.toml)",
    )
    group.addoption(
        "--bg-compose-file",
        type=Path,
        action="append",
        default=None,
        help="Compose file, repeatable and layered like 'docker compose -f a -f b'",
    )


@pytest.fixture(scope="session")
def bluegreen_config(pytestconfig: pytest.Config) -> StackConfig:
    """The validated settings of the stack under test, from ``--bg-config`` and the rootdir."""
    try:
        return load_config(
            pytestconfig.rootpath,
            pytestconfig.getoption("bg_config"),
            pytestconfig.getoption("bg_compose_file"),
        )
    except ConfigError as exc:
        raise pytest.UsageError(f"bluegreen: {exc}") from None
