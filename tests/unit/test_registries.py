"""The adapter registries: the settings' names give their classes, and nothing else asks which.

No Docker: the engines are named, not opened (a stand-in engine is registered where a host
opens one), and the routers are made without reaching HAProxy or a swarm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from pytest_bluegreen import commands
from pytest_bluegreen.adapters import engines, host
from pytest_bluegreen.adapters.engines import engine_class, router_kind, runs_on_this_host
from pytest_bluegreen.adapters.engines.compose import ComposeStack
from pytest_bluegreen.adapters.engines.swarm import SwarmStack
from pytest_bluegreen.adapters.host import StackAdapters
from pytest_bluegreen.adapters.load import open_load
from pytest_bluegreen.adapters.load.locust_runner import LoadRun
from pytest_bluegreen.adapters.routers import kind_of, router_for
from pytest_bluegreen.adapters.routers.haproxy import HAProxyRouter
from pytest_bluegreen.adapters.routers.haproxy_replicas import ReplicatedRouter
from pytest_bluegreen.core.config import StackConfig, load_config
from pytest_bluegreen.core.errors import ConfigError
from pytest_bluegreen.core.ports import Router
from tests.unit.reference import stack_config


def config_of(tmp_path: Path, engine: str) -> StackConfig:
    return stack_config(tmp_path, engine={"name": engine})


def test_each_engine_name_gives_its_class() -> None:
    assert engine_class("compose") is ComposeStack
    assert engine_class("swarm") is SwarmStack
    assert not issubclass(SwarmStack, ComposeStack)  # they share a Project, not a base class


def test_an_unknown_engine_is_a_config_error_that_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown engine 'kubernetes': .* are compose, swarm$"):
        engine_class("kubernetes")
    with pytest.raises(ConfigError, match="unknown engine 'kubernetes'"):
        router_for(config_of(tmp_path, "kubernetes"))


@pytest.mark.parametrize(
    ("engine", "kind", "router", "in_container", "on_this_host"),
    [
        ("compose", "haproxy", HAProxyRouter, "/var/lib/bluegreen/active.map", True),
        ("swarm", "haproxy-replicas", ReplicatedRouter, "/tmp/active.map", False),
    ],
)
def test_the_router_follows_the_engine(
    tmp_path: Path,
    engine: str,
    kind: str,
    router: type[Router],
    in_container: str,
    on_this_host: bool,
) -> None:
    config = config_of(tmp_path, engine)
    assert router_kind(config) == kind
    made = router_for(config)  # neither HAProxy nor Docker is reached
    assert type(made) is router
    assert made.map_in_container == in_container
    assert runs_on_this_host(config) is on_this_host
    assert type(StackAdapters(config).router) is router


def test_an_unknown_router_kind_is_a_config_error_that_lists_the_known_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ComposeStack, "router_kind", "nginx")
    with pytest.raises(
        ConfigError, match=r"unknown router 'nginx': .* are haproxy, haproxy-replicas$"
    ):
        kind_of(config_of(tmp_path, "compose"))


def test_the_load_registry_gives_locust_on_the_public_url(tmp_path: Path) -> None:
    config = config_of(tmp_path, "compose")
    load = open_load(config, max_seconds=12)
    assert isinstance(load, LoadRun)
    assert (load.url, load.max_seconds, load.users) == (config.public_url, 12, config.load.users)
    unknown = stack_config(tmp_path, load={"generator": "k6"})  # past the settings' own check
    with pytest.raises(ConfigError, match=r"unknown load generator 'k6': .* are locust$"):
        open_load(unknown, 12)


def test_the_settings_name_the_load_generator(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.blue-green.yml").touch()
    (tmp_path / "bluegreen.toml").write_text('[load]\ngenerator = "k6"\n')
    with pytest.raises(ConfigError, match=r"bluegreen.load.generator must be one of locust"):
        load_config(tmp_path, environ={})
    (tmp_path / "bluegreen.toml").write_text('[load]\ngenerator = "locust"\n')
    assert load_config(tmp_path, environ={}).load.generator == "locust"


@pytest.mark.parametrize(
    ("engine", "reach"),
    [
        ("compose", "set map /var/lib/bluegreen/active.map active blue (runtime API), map"),
        (
            "swarm",
            "set map /tmp/active.map active blue (runtime API, every loadbalancer replica, "
            "confirmed on each), map",
        ),
    ],
)
def test_the_plan_says_what_the_engines_router_switches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, reach: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # no engine reached
    monkeypatch.setattr(commands, "detect_compose_command", lambda: ["docker", "compose"])
    lines = commands.plan(config_of(tmp_path, engine), "r9").splitlines()
    (switch,) = [line for line in lines if ". switch: " in line]
    assert switch.split(". switch: ")[1].startswith(reach)


class StandInEngine:
    """An engine whose database runs in a container of its own naming, started on request."""

    router_kind: ClassVar[str] = "haproxy"
    runs_on_this_host: ClassVar[bool] = True
    made: ClassVar[list[StandInEngine]] = []

    def __init__(self, config: StackConfig, progress: Any, *, router: Router | None) -> None:
        self.config, self.router = config, router
        self.started: list[list[str]] = []
        StandInEngine.made.append(self)

    def running_services(self, services: list[str]) -> list[str]:
        return [s for s in services if [s] in self.started]

    def start(self, services: list[str]) -> None:
        self.started.append(list(services))

    def database_container(self, service: str) -> str:
        return f"{service}-on-this-engine"


def test_a_host_opens_its_engine_from_the_registry_and_asks_it_for_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(engines.ENGINES, "compose", f"{__name__}:StandInEngine")
    StandInEngine.made.clear()
    opened: list[tuple[StackConfig, str]] = []
    monkeypatch.setattr(host, "open_database", lambda config, c: opened.append((config, c)))
    config = config_of(tmp_path, "compose")
    adapters = StackAdapters(config)

    stack = adapters.open_stack()
    adapters.database()

    assert isinstance(stack, StandInEngine)
    assert StandInEngine.made == [stack]
    assert stack.router is adapters.router  # one router for the host and its engine
    assert stack.started == [["db"]]  # not running: started first
    assert opened == [(config, "db-on-this-engine")]
