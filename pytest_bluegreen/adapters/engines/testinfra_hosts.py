"""testinfra hosts for the running containers of a stack's services, through ``docker exec``."""

from __future__ import annotations

from typing import Any

import testinfra

from pytest_bluegreen.adapters.engines.compose import ComposeStack
from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.errors import StackError


def service_name(config: StackConfig, colour: Colour | None, name: str) -> str:
    """``name`` as a Compose service: a colour's role ("backend") or a service as it is ("db").

    A role is a colour service pattern without its colour: ``backend-{colour}`` is "backend".
    """
    for pattern in config.services.colours:
        role = pattern.replace("{colour}", "").strip("-_")
        if name == role:
            if colour is None:
                raise StackError(f"{name!r} is a colour service, and no colour is under test")
            return pattern.format(colour=colour)
    return name


def container_host(stack: ComposeStack, service: str) -> Any:
    """A testinfra host inside the running container of ``service``."""
    running = stack.container_ids(service, running_only=True)
    if not running:
        raise StackError(f"{service} has no running container to inspect")
    return testinfra.get_host(f"docker://{running[0]}")
