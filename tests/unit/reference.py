"""The reference stack's shape, for unit tests that drive its services by name."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_bluegreen.core.config import (
    SECTIONS,
    DatabaseSettings,
    MigrationSettings,
    RouterSettings,
    ServicesSettings,
    StackConfig,
)

REFERENCE: dict[str, Any] = {
    "project_name": "aptos",
    "services": ServicesSettings(colours=("backend-{colour}", "frontend-{colour}")),
    "router": RouterSettings(backends=("api_{colour}", "web_{colour}")),
    "database": DatabaseSettings(kind="postgres"),
    "migrations": MigrationSettings(
        service="backend-{colour}", command=("python3", "manage.py", "migrate", "--noinput")
    ),
}


def stack_config(
    project_dir: Path, base: Mapping[str, Any] = REFERENCE, **settings: Any
) -> StackConfig:
    """Settings of ``base`` with ``settings`` on top, a section's as a dict of its fields changed.

    ``stack_config(p, state_dir=p / "s", load={"users": 0})``: one line per test, not a
    ``dataclasses.replace`` per section.
    """
    values = dict(base)
    for name, value in settings.items():
        if name in SECTIONS and isinstance(value, Mapping):
            value = dataclasses.replace(values.get(name) or SECTIONS[name](), **value)
        values[name] = value
    return StackConfig(project_dir=project_dir, **values)
