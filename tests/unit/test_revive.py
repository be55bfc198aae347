"""Starting a retired colour again for a rollback: side by side, and ready when traffic is.

A stand-in engine (containers and their states), router (HAProxy's view) and preview; the
real start-up is the integration tests' (rollback to a retired colour) and the bench's.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from pytest_bluegreen.adapters.engines import compose as stack_module
from pytest_bluegreen.adapters.engines import project as project_module
from pytest_bluegreen.adapters.engines.compose import ComposeStack
from pytest_bluegreen.adapters.engines.compose_cli import Compose
from pytest_bluegreen.adapters.engines.docker_api import DockerEngine
from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.errors import StackError
from pytest_bluegreen.core.ports import (
    ContainerState,
    DrainResult,
    Preflight,
    ServerState,
    SwitchResult,
)
from tests.unit.reference import stack_config


class StandInEngine:
    """Containers by service (one each), which run, and what Docker says of them.

    It stands in for the concrete ``DockerEngine`` (there is no Protocol of it), hence the
    ``type: ignore[arg-type]`` where a Stack is given it.
    """

    def __init__(self, services: Sequence[str], running: Sequence[str] = ()) -> None:
        self.ids = {service: [f"{service}-1"] for service in services}
        self.running = {f"{service}-1" for service in running}
        self.health: dict[str, str | None] = {}
        self.exited: set[str] = set()
        self.started: list[list[str]] = []
        self.inspected = 0

    def service_containers(
        self, project: str, service: str, *, running_only: bool = False
    ) -> list[str]:
        ids = self.ids.get(service, [])
        return [i for i in ids if i in self.running] if running_only else list(ids)

    def start(self, container_ids: Sequence[str]) -> None:
        self.started.append(list(container_ids))
        self.running |= set(container_ids)

    def state(self, container_id: str) -> ContainerState:
        self.inspected += 1
        if container_id in self.exited:
            return ContainerState(container_id, container_id, "exited", None, 3)
        status = "running" if container_id in self.running else "exited"
        return ContainerState(
            container_id, container_id, status, self.health.get(container_id, "starting"), 0
        )

    def logs(self, container_id: str, tail: int = 50) -> str:
        return f"{container_id}: ImportError: no module named settings"


class StandInRouter:
    """HAProxy's view: the colour's servers come UP after ``down_polls`` looks.

    A revive only asks ``not_ready``; the rest of the Router raises.
    """

    def __init__(self, down_polls: int) -> None:
        self.down_polls = down_polls
        self.looks = 0

    def not_ready(self, colour: Colour) -> list[ServerState]:
        self.looks += 1
        if self.looks > self.down_polls:
            return []
        return [ServerState(f"api_{colour}", f"backend-{colour}", "DOWN", 0, 0)]

    def active_colour(self) -> Colour:
        raise NotImplementedError

    def servers(self, colour: Colour) -> list[ServerState]:
        raise NotImplementedError

    def wait_ready(self, colour: Colour, timeout_s: float) -> None:
        raise NotImplementedError

    def drain(self, colour: Colour, timeout_s: float) -> DrainResult:
        raise NotImplementedError

    def preflight(self, to_colour: Colour, *, expect_from: Colour | None = None) -> Preflight:
        raise NotImplementedError

    def switch(
        self,
        to_colour: Colour,
        *,
        expect_from: Colour | None = None,
        preflight: Preflight | None = None,
    ) -> SwitchResult:
        raise NotImplementedError

    def switch_now(self, to_colour: Colour, *, expect_from: Colour | None = None) -> SwitchResult:
        raise NotImplementedError

    def publish_releases(self, releases: Mapping[Colour, str], *, running: bool) -> None:
        raise NotImplementedError


class StandInPreview:
    """The preview: each path answers after it was asked ``failures[path]`` times."""

    def __init__(self, failures: dict[str, int] | None = None) -> None:
        self.failures = failures or {}
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def __call__(
        self, url: str, paths: Sequence[str], colour: Colour, *a: Any, **k: Any
    ) -> list[str]:
        problems = []
        with self.lock:
            for path in paths:
                self.asked.append(path)
                if self.asked.count(path) <= self.failures.get(path, 0):
                    problems.append(f"{path}: HTTP 503, expected 200")
        return problems


BLUE = ["backend-blue", "frontend-blue"]


@pytest.fixture
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[ComposeStack, StandInEngine, StandInRouter, StandInPreview]:
    config = stack_config(
        tmp_path,
        env_file=tmp_path / ".env",
        env={},
        gates={"critical_paths": ("/", "/api/v1/health", "/health")},
    )
    engine = StandInEngine([*BLUE, "backend-green", "frontend-green"])
    router = StandInRouter(down_polls=3)
    preview = StandInPreview()
    monkeypatch.setattr(project_module, "check_colour_serves", preview)
    monkeypatch.setattr(stack_module, "REVIVE_POLL_S", 0.001)
    monkeypatch.setattr(project_module, "PREVIEW_RETRY_S", 0.001)
    stack = ComposeStack(
        config,
        engine=engine,  # type: ignore[arg-type]
        compose_command=("docker-compose",),
        router=router,
    )
    return stack, engine, router, preview


def no_compose(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Compose's start, recorded instead of run."""
    started: list[list[str]] = []
    monkeypatch.setattr(Compose, "start", lambda self, services: started.append(list(services)))
    return started


def test_every_stopped_container_starts_at_once_and_traffic_readiness_is_awaited(
    world: tuple[ComposeStack, StandInEngine, StandInRouter, StandInPreview],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack, engine, router, preview = world
    composed = no_compose(monkeypatch)
    stack.revive("blue")
    assert engine.started == [["backend-blue-1", "frontend-blue-1"]]  # one call, side by side
    assert composed == []
    assert router.looks == 4  # polled until HAProxy saw every server UP
    assert sorted(preview.asked) == ["/", "/api/v1/health", "/health"]
    # Docker's health was never waited for: the containers are still "starting".
    assert all(engine.state(i).health == "starting" for i in engine.started[0])


def test_a_path_that_answered_is_not_asked_again(
    world: tuple[ComposeStack, StandInEngine, StandInRouter, StandInPreview],
) -> None:
    stack, _, _, preview = world
    preview.failures = {"/": 2}
    stack.revive("blue")
    assert preview.asked.count("/") == 3
    assert preview.asked.count("/health") == 1
    assert preview.asked.count("/api/v1/health") == 1


def test_a_colour_running_and_up_is_left_alone(
    world: tuple[ComposeStack, StandInEngine, StandInRouter, StandInPreview],
) -> None:
    stack, engine, router, preview = world
    engine.running |= {"backend-blue-1", "frontend-blue-1"}
    router.down_polls = 0
    stack.revive("blue")
    assert engine.started == []
    assert preview.asked == []


def test_a_container_that_exits_fails_the_revive_with_its_logs(
    world: tuple[ComposeStack, StandInEngine, StandInRouter, StandInPreview],
) -> None:
    stack, engine, router, _ = world
    router.down_polls = 10**9
    engine.exited.add("backend-blue-1")
    with pytest.raises(StackError, match=r"backend-blue is exited \(exit code 3\)") as caught:
        stack.revive("blue")
    assert "no module named settings" in str(caught.value)


def test_servers_never_up_fail_at_the_bound(
    world: tuple[ComposeStack, StandInEngine, StandInRouter, StandInPreview],
) -> None:
    stack, _, router, _ = world
    router.down_polls = 10**9
    stack.project.config = dataclasses.replace(
        stack.config, engine=dataclasses.replace(stack.config.engine, healthy_timeout_s=0.05)
    )
    with pytest.raises(StackError, match="not UP in HAProxy after 0s: api_blue/backend-blue DOWN"):
        stack.revive("blue")


def test_a_preview_that_never_answers_fails_with_what_it_answered(
    world: tuple[ComposeStack, StandInEngine, StandInRouter, StandInPreview],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack, _, _, preview = world
    preview.failures = {"/health": 10**9}
    monkeypatch.setattr(stack_module, "REVIVE_SERVING_TIMEOUT_S", 0.05)
    with pytest.raises(StackError, match="blue does not serve after 0s: /health: HTTP 503"):
        stack.revive("blue")


def test_workers_have_no_server_and_are_awaited_healthy_in_dockers_eyes(
    world: tuple[ComposeStack, StandInEngine, StandInRouter, StandInPreview],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack, engine, _, _ = world
    stack.project.config = dataclasses.replace(
        stack.config,
        services=dataclasses.replace(stack.config.services, workers=("worker-{colour}",)),
    )
    engine.ids["worker-blue"] = ["worker-blue-1"]
    engine.health["worker-blue-1"] = "healthy"
    stack.revive("blue")
    assert engine.started == [["backend-blue-1", "frontend-blue-1", "worker-blue-1"]]
    assert engine.state("worker-blue-1").ready

    engine.running.clear()
    engine.health["worker-blue-1"] = "unhealthy"
    with pytest.raises(StackError, match="worker-blue is unhealthy"):
        stack.revive("blue")


def test_a_service_without_a_container_is_left_to_compose(
    world: tuple[ComposeStack, StandInEngine, StandInRouter, StandInPreview],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack, engine, _, _ = world
    composed = no_compose(monkeypatch)
    engine.ids["frontend-blue"] = []
    stack.revive("blue")
    assert engine.started == [["backend-blue-1"]]
    assert composed == [["frontend-blue"]]


class StandInClient:
    """The docker SDK client, as far as starting containers goes."""

    def __init__(self, refuse: str = "") -> None:
        self.refuse = refuse
        self.started: list[str] = []
        self.threads: set[str] = set()
        self.api = self

    def ping(self) -> bool:
        return True

    def start(self, container_id: str) -> None:
        self.threads.add(threading.current_thread().name)
        if container_id == self.refuse:
            raise docker.errors.APIError("driver failed programming external connectivity")
        self.started.append(container_id)


def test_the_engine_starts_containers_side_by_side() -> None:
    client = StandInClient()
    DockerEngine(client).start(["a", "b", "c"])
    assert sorted(client.started) == ["a", "b", "c"]
    assert client.threads  # started from the pool's threads
    assert threading.current_thread().name not in client.threads


def test_a_container_the_engine_cannot_start_is_named() -> None:
    with pytest.raises(StackError, match=r"could not start container b: .*external connectivity"):
        DockerEngine(StandInClient(refuse="b")).start(["a", "b"])
    DockerEngine(StandInClient()).start([])  # nothing to start: no pool
