"""pytest-bluegreen: zero-downtime blue-green deploys of a Compose stack behind HAProxy.

The public API: suites and a team's own gates import from here, from the check functions of
:mod:`pytest_bluegreen.checks` (HTTP probes, latency, container hardening) and from the packaged
gates of :mod:`pytest_bluegreen.gates` (to collect one under a suite's own name), never from the
modules inside. The names that need the deploy machinery are imported on first use, since pytest
loads this package for every run of an environment where the plugin is installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from pytest_bluegreen.core.colours import COLOURS, Colour, other_colour
from pytest_bluegreen.core.errors import BluegreenError

if TYPE_CHECKING:
    from pytest_bluegreen.adapters.databases.rehearsal import (
        LiveColourOnCopy,
        MigrationRehearsal,
        ScratchDatabase,
    )
    from pytest_bluegreen.adapters.engines.compose import ComposeStack
    from pytest_bluegreen.adapters.engines.testinfra_hosts import service_name
    from pytest_bluegreen.checks.probe import Target, https_session
    from pytest_bluegreen.core.config import StackConfig
    from pytest_bluegreen.core.deployment import Deployment
    from pytest_bluegreen.gates.container_facts import CommandFailed, Container
    from pytest_bluegreen.reporting.secrets import is_secret_name
    from pytest_bluegreen.stage_tracker import not_applicable

_LAZY: Final = {
    "StackConfig": "pytest_bluegreen.core.config",
    "Deployment": "pytest_bluegreen.core.deployment",
    "Target": "pytest_bluegreen.checks.probe",
    "https_session": "pytest_bluegreen.checks.probe",
    "LiveColourOnCopy": "pytest_bluegreen.adapters.databases.rehearsal",
    "MigrationRehearsal": "pytest_bluegreen.adapters.databases.rehearsal",
    "ScratchDatabase": "pytest_bluegreen.adapters.databases.rehearsal",
    "ComposeStack": "pytest_bluegreen.adapters.engines.compose",
    "not_applicable": "pytest_bluegreen.stage_tracker",
    "Container": "pytest_bluegreen.gates.container_facts",
    "CommandFailed": "pytest_bluegreen.gates.container_facts",
    "service_name": "pytest_bluegreen.adapters.engines.testinfra_hosts",
    "is_secret_name": "pytest_bluegreen.reporting.secrets",
}

__all__ = [
    "COLOURS",
    "BluegreenError",
    "Colour",
    "CommandFailed",
    "ComposeStack",
    "Container",
    "Deployment",
    "LiveColourOnCopy",
    "MigrationRehearsal",
    "ScratchDatabase",
    "StackConfig",
    "Target",
    "https_session",
    "is_secret_name",
    "not_applicable",
    "other_colour",
    "service_name",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """A public name that needs the deploy machinery, imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_bluegreen' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
