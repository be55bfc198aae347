"""The containers of the colour under test, for the infra checks, each looked up once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pytest_bluegreen.adapters.engines.compose import ComposeStack
from pytest_bluegreen.adapters.engines.testinfra_hosts import service_name
from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.gates.container_facts import Container

ROLES = ("backend", "frontend")


@pytest.fixture(scope="module")
def container(
    request: pytest.FixtureRequest,
    bluegreen_host: Callable[[str], Any],
    bluegreen_stack: ComposeStack,
    bluegreen_colour: Colour | None,
) -> Container:
    """The running container of a role ("backend", "frontend") of the colour under test.

    Module-scoped: every check of a role reuses its container and the outputs already read.
    """
    role: str = request.param
    service = service_name(bluegreen_stack.config, bluegreen_colour, role)
    return Container(role, service, bluegreen_host(role))
