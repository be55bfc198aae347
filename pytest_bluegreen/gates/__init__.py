"""The gates shipped in the package, named ``bluegreen:<name>`` in the settings.

One folder per gate, each a pytest test package driven only by the settings and the
``bluegreen_*`` fixtures, so a team that installs the package needs no suite of its own::

    [tool.bluegreen.gates]
    suites = ["bluegreen:http", "bluegreen:latency", "bluegreen:hardening", "suites/smoke"]
    postdeploy_suite = "bluegreen:postdeploy"

Anything without the prefix is a path under the project. The plugin passes a packaged gate's
folder to pytest by its absolute path, collected from site-packages like any argument, and
collects its test modules whatever the project's ``python_files`` says. The plugin imports this
module at start-up: it imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pytest_bluegreen.core.errors import ConfigError

__all__ = [
    "GATES_DIR",
    "PREFIX",
    "BluegreenWarning",
    "is_packaged_module",
    "packaged_names",
    "resolve_suite",
]

PREFIX: Final = "bluegreen:"
GATES_DIR: Final = Path(__file__).parent
# A packaged gate's test modules.
TEST_MODULES: Final = "test_*.py"


class BluegreenWarning(UserWarning):
    """A check the settings make a warning ("warn"): reported, and the gate passes."""


def packaged_names() -> tuple[str, ...]:
    """The gates shipped in the package: each folder here that is a Python package."""
    return tuple(
        sorted(
            path.name
            for path in GATES_DIR.iterdir()
            if (path / "__init__.py").is_file() and not path.name.startswith("_")
        )
    )


def _known() -> str:
    return ", ".join(PREFIX + name for name in packaged_names())


def resolve_suite(name: str, project_dir: Path) -> Path:
    """The folder (or file) of a suite of the settings: packaged, or a path under the project.

    Raises :class:`ConfigError` (one line) for an unknown ``bluegreen:`` name or a missing path.
    """
    if name.startswith(PREFIX):
        gate = name.removeprefix(PREFIX)
        if gate not in packaged_names():
            raise ConfigError(f"unknown packaged suite {name!r}; known: {_known()}")
        return GATES_DIR / gate
    path = project_dir / name
    if not path.exists():
        hint = f" (a gate shipped in the package is named {PREFIX}{name})"
        raise ConfigError(
            f"suite not found: {path}"
            + (hint if name in packaged_names() else f"; the packaged gates are {_known()}")
        )
    return path


def is_packaged_module(path: Path) -> bool:
    """``path`` is a test module of a packaged gate (collected whatever ``python_files`` says)."""
    return path.parent.parent == GATES_DIR and path.match(TEST_MODULES)
