"""A real reference stack on the local Docker engine, shared by the integration tests.

It runs as Compose project ``bgtest`` on loopback ports 18xxx, with its own state folder and
secrets, so it never touches a stack deployed with the defaults on the same machine. The
throwaway stack itself (settings, life, a user's run) is :mod:`tests.harness`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.core.config import StackConfig
from tests.harness import (
    NOISY_P99,
    StackUser,
    Throwaway,
    bring_up,
    ports,
    progress,
    short_home,
    throwaway_stack,
)
from tests.harness import REPO as REPO  # for the tests that import it from here
from tests.images import ThrowawayImages

TEST_PORTS = ports(18000)


def make_config(
    project: str,
    home: Path,
    extra_compose: list[Path] | None = None,
    ports: Mapping[str, str] | None = TEST_PORTS,
) -> StackConfig:
    """Settings for a throwaway Compose project whose state and secrets live in ``home``."""
    compose = tuple(extra_compose or ())
    return Throwaway(project, home, ports or {}, compose=compose, settings=NOISY_P99).config()


@pytest.fixture(scope="session", name="short_home")
def short_home_fixture() -> Iterator[Path]:
    """A short folder: HAProxy's admin socket path must stay under about 100 bytes."""
    with short_home("bgit-") as home:
        yield home


@dataclass
class RunningStack(StackUser):
    """The reference stack, up, and the seconds it took to come up from no containers."""

    up_seconds: float


@pytest.fixture(scope="session")
def running_stack(short_home: Path, throwaway_images: ThrowawayImages) -> Iterator[RunningStack]:
    """The reference stack brought up from no containers and no volumes, blue live."""
    throwaway = Throwaway("bgtest", short_home, TEST_PORTS, settings=NOISY_P99)
    with throwaway_stack(throwaway, images=throwaway_images) as stack:
        running = RunningStack(throwaway, stack, bring_up(stack))
        progress(f"healthy from no containers in {running.up_seconds:.1f}s")
        yield running


@pytest.fixture
def blue_live(running_stack: RunningStack) -> Iterator[RunningStack]:
    """The stack with blue live, put back to blue after the test whatever it switched."""
    router = running_stack.stack.router
    if router.active_colour() != "blue":
        router.switch("blue")
    yield running_stack
    running_stack.stack.router.wait_ready("blue", timeout_s=30)
    if running_stack.stack.router.active_colour() != "blue":
        running_stack.stack.router.switch("blue")


@pytest.fixture
def https(running_stack: RunningStack) -> Iterator[requests.Session]:
    """A keep-alive HTTPS client that trusts the stack's own certificate."""
    with requests.Session() as session:
        # REQUESTS_CA_BUNDLE in the environment would override session.verify.
        session.trust_env = False
        session.verify = str(running_stack.config.ca_file)
        yield session
