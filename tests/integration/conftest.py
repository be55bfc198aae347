"""A real reference stack on the local Docker engine, shared by the integration tests.

It runs as Compose project ``bgtest`` on loopback ports 18xxx, with its own state folder and
secrets, so it never touches a stack deployed with the defaults on the same machine.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.adapters.stack import Stack
from pytest_bluegreen.core.config import StackConfig, load_config
from tests.images import ThrowawayImages

REPO = Path(__file__).resolve().parents[2]
TEST_PORTS = {
    "PUBLIC_BIND": "127.0.0.1",
    "PUBLIC_HTTP_PORT": "18080",
    "PUBLIC_HTTPS_PORT": "18443",
    "PREVIEW_BLUE_PORT": "18441",
    "PREVIEW_GREEN_PORT": "18442",
    "STATS_PORT": "18404",
}


def progress(message: str) -> None:
    print(f"[stack] {message}", file=sys.stderr, flush=True)


def make_config(
    project: str,
    home: Path,
    extra_compose: list[Path] | None = None,
    ports: Mapping[str, str] | None = TEST_PORTS,
) -> StackConfig:
    """Settings for a throwaway Compose project whose state and secrets live in ``home``."""
    files = [REPO / "docker-compose.blue-green.yml", *(extra_compose or [])]
    settings = home / "bluegreen.toml"
    settings.write_text(
        f'project_name = "{project}"\n'
        f'state_dir = "{home / "state"}"\n'
        f'env_file = "{home / "test.env"}"\n'
        f"compose_files = {[str(f) for f in files]!r}\n".replace("'", '"')
        # p99 of a one-second window is noise on this shared 2-core machine (50-150 ms from
        # second to second without a switch): these tests hold the zero-failure budget; the
        # p99 overhead of a switch is measured in bench/.
        + "load_p99_budget_ms = 2000\n"
    )
    environ = {**os.environ, **(ports or {})}
    return load_config(REPO, settings, environ=environ)


@pytest.fixture(scope="session")
def short_home() -> Iterator[Path]:
    """A short folder: HAProxy's admin socket path must stay under about 100 bytes."""
    home = Path(tempfile.mkdtemp(prefix="bgit-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@dataclass
class RunningStack:
    stack: Stack
    up_seconds: float

    @property
    def config(self) -> StackConfig:
        return self.stack.config


@pytest.fixture(scope="session")
def running_stack(short_home: Path, throwaway_images: ThrowawayImages) -> Iterator[RunningStack]:
    """The reference stack brought up from no containers and no volumes, blue live."""
    throwaway_images.add("bgtest")
    stack = Stack(make_config("bgtest", short_home), progress=progress)
    stack.down(volumes=True)
    start = time.monotonic()
    stack.up(("blue", "green"), live="blue")
    running = RunningStack(stack, time.monotonic() - start)
    progress(f"healthy from no containers in {running.up_seconds:.1f}s")
    yield running
    stack.down(volumes=True)


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
