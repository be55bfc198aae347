"""Users' load across the switch: Locust in a process of its own; the registry."""

from __future__ import annotations

from typing import Final

from pytest_bluegreen.adapters.registry import entry, load
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.ports import LoadGenerator

LOADS: Final = {"locust": "pytest_bluegreen.adapters.load.locust_runner:locust_load"}
# The settings name no load generator yet: Locust is the one there is.
DEFAULT_LOAD: Final = "locust"


def open_load(config: StackConfig, max_seconds: float, kind: str = DEFAULT_LOAD) -> LoadGenerator:
    """The load generator ``kind`` on the settings' public URL; it stops by itself."""
    generator: LoadGenerator = load(entry(LOADS, kind, "load generator"))(config, max_seconds)
    return generator
