"""What the plugin's hooks, its fixtures and the packaged gates share within one pytest run.

The stack's settings as pytest's options name them, and the key under which a ``--bg-deploy``
run keeps its stage tracker. A module of its own so that the fixtures and the gates reach
them without importing the hook module that registers them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import pytest

from pytest_bluegreen.core.errors import BluegreenError

if TYPE_CHECKING:
    from pytest_bluegreen.core.config import StackConfig
    from pytest_bluegreen.stage_tracker import StageTracker

# A --bg-deploy session's StageTracker, on the config's stash.
TRACKER_KEY: Final[pytest.StashKey[StageTracker]] = pytest.StashKey()


def load_settings(config: pytest.Config) -> StackConfig:
    """The stack's settings, from ``--bg-config``, ``--bg-compose-file`` and the rootdir."""
    from pytest_bluegreen.core.config import load_config

    try:
        return load_config(
            config.rootpath,
            config.getoption("bg_config"),
            config.getoption("bg_compose_file"),
        )
    except BluegreenError as exc:
        raise pytest.UsageError(f"bluegreen: {exc}") from None
