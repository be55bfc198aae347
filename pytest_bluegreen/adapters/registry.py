"""The lookup behind the adapter registries (engines, routers, load): a name, then its object.

Each registry maps a name from the settings to where its object lives (``"module:attribute"``),
imported only when that name is asked for: an engine that is not used costs no import (the
swarm one pulls in yaml and the docker SDK), as testinfra's backends and pytest-xdist's
schedulers do.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, TypeVar

from pytest_bluegreen.core.errors import ConfigError

T = TypeVar("T")


def entry(registry: Mapping[str, T], name: str, what: str) -> T:
    """``registry[name]``; an unknown name is a ConfigError that names the known ones."""
    if name not in registry:
        known = ", ".join(sorted(registry))
        raise ConfigError(f"unknown {what} {name!r}: the known ones are {known}")
    return registry[name]


def load(where: str) -> Any:
    """The object ``"module:attribute"`` names, its module imported now."""
    module, _, attribute = where.partition(":")
    return getattr(importlib.import_module(module), attribute)
