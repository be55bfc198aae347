"""Users' load across the switch: Locust in a process of its own; the registry."""

from __future__ import annotations

from typing import Final

from pytest_bluegreen.adapters.registry import entry, load
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.ports import LoadGenerator

LOADS: Final = {"locust": "pytest_bluegreen.adapters.load.locust_runner:locust_load"}


def open_load(config: StackConfig, max_seconds: float) -> LoadGenerator:
    """The settings' load generator (``load.generator``) on the public URL; it stops by itself."""
    kind = config.load.generator
    generator: LoadGenerator = load(entry(LOADS, kind, "load generator"))(config, max_seconds)
    return generator
