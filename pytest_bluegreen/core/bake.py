"""Bake: watch the new colour for a while, with the old one still running to roll back to.

Caught: a container that stops, restarts (its restart count grows) or turns unhealthy, a server
the router no longer sees UP, and users' requests that failed since the switch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.errors import DeployError
from pytest_bluegreen.core.ports import Router, Stack

POLL_S = 0.5


def problems_now(
    stack: Stack,
    router: Router,
    colour: Colour,
    containers: dict[str, list[str]],
    restarts_before: dict[str, int],
    failed_requests: int,
    failure_budget: int,
) -> list[str]:
    """Everything wrong with ``colour`` at this moment; empty when it is healthy."""
    problems = [
        f"{s.backend}/{s.server} is {s.status} in HAProxy" for s in router.not_ready(colour)
    ]
    if failed_requests > failure_budget:
        problems.append(f"{failed_requests} user requests failed since the switch")
    for service, ids in containers.items():
        for container in ids:
            state = stack.container_state(container)
            if state.restarts > restarts_before[container]:
                problems.append(f"{service} restarted ({state.describe()})")
            elif not state.ready:
                problems.append(f"{service} is {state.describe()}")
    return problems


def bake(
    stack: Stack,
    router: Router,
    colour: Colour,
    services: Sequence[str],
    seconds: float,
    failed_requests: Callable[[], int],
    failure_budget: int,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Raise :class:`DeployError` at the first problem within ``seconds``, with the logs."""
    containers = {service: stack.container_ids(service) for service in services}
    restarts = {i: stack.container_state(i).restarts for ids in containers.values() for i in ids}
    deadline = clock() + seconds
    while True:
        problems = problems_now(
            stack, router, colour, containers, restarts, failed_requests(), failure_budget
        )
        if problems:
            logs = "".join(
                f"\n{service}: {stack.logs(ids[0], tail=10)}"
                for service, ids in containers.items()
                if ids and any(service in p for p in problems)
            )
            raise DeployError(f"{colour} failed while baking: {'; '.join(problems)}{logs}")
        if clock() >= deadline:
            return
        sleep(POLL_S)
