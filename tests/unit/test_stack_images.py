"""What a deploy does with images and ports before it starts anything, with a stand-in engine."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pytest_bluegreen.adapters.engines.compose import ComposeStack, port_in_use
from pytest_bluegreen.adapters.engines.compose_cli import Compose, PublishedPort, ServiceSpec
from pytest_bluegreen.adapters.engines.project import repository
from pytest_bluegreen.core.errors import PortInUse
from tests.unit.reference import stack_config


class StandInEngine:
    """Images by reference, tags by repository, and which services run.

    It stands in for the concrete ``DockerEngine`` (there is no Protocol of it), hence the
    ``type: ignore[arg-type]`` where a Stack is given it.
    """

    def __init__(self) -> None:
        self.images: set[str] = set()
        self.tags: dict[str, list[tuple[str, float]]] = {}
        self.in_use: set[str] = set()
        self.running: set[str] = set()
        self.removed: list[str] = []

    def image_id(self, reference: str) -> str | None:
        return f"sha256:{reference}" if reference in self.images else None

    def image_tags(self, repo: str) -> list[tuple[str, float]]:
        return sorted(self.tags.get(repo, []), key=lambda item: item[1], reverse=True)

    def remove_image(self, reference: str) -> str | None:
        if reference in self.in_use:
            return "conflict: image is being used by a stopped container"
        self.removed.append(reference)
        return None

    def service_containers(
        self, project: str, service: str, *, running_only: bool = False
    ) -> list[str]:
        return [f"{service}-1"] if service in self.running else []


SPECS = {
    "db": ServiceSpec("db", "shop-db:15", builds=True),
    "cache": ServiceSpec("cache", "redis:7", builds=False),
    "loadbalancer": ServiceSpec(
        "loadbalancer", "shop-lb:2", builds=True, ports=(PublishedPort("127.0.0.1", 0),)
    ),
    "backend-blue": ServiceSpec("backend-blue", "shop-backend:r3", builds=True),
    "backend-green": ServiceSpec("backend-green", "shop-backend:r4", builds=True),
    "frontend-blue": ServiceSpec("frontend-blue", "registry:5000/shop/web:r3", builds=True),
    "frontend-green": ServiceSpec("frontend-green", "registry:5000/shop/web:r4", builds=True),
    "grafana": ServiceSpec("grafana", "shop-grafana:1", builds=True, profiles=("monitoring",)),
}


def make_stack(
    tmp_path: Path, engine: StandInEngine, env: dict[str, str] | None = None
) -> ComposeStack:
    config = stack_config(tmp_path, env_file=tmp_path / ".env", env=env or {})
    return ComposeStack(config, engine=engine, compose_command=("docker-compose",))  # type: ignore[arg-type]


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    built: list[list[str]] = []

    def build(self: Compose, services: Sequence[str], timeout: float = 0) -> None:
        built.append(list(services))

    monkeypatch.setattr(Compose, "build", build)
    return built


def test_shared_services_are_neither_a_colours_nor_optional(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, StandInEngine())
    assert stack.shared_services(SPECS) == ["db", "cache", "loadbalancer"]


def test_a_colours_workers_are_not_shared(tmp_path: Path) -> None:
    config = stack_config(tmp_path, services={"workers": ("worker-{colour}",)})
    stack = ComposeStack(config, engine=StandInEngine(), compose_command=("docker-compose",))  # type: ignore[arg-type]
    specs = {
        **SPECS,
        "worker-blue": ServiceSpec("worker-blue", "shop-backend:r3", builds=True),
        "worker-green": ServiceSpec("worker-green", "shop-backend:r4", builds=True),
    }
    assert stack.shared_services(specs) == ["db", "cache", "loadbalancer"]


def test_a_new_engine_gets_the_shared_images_built(tmp_path: Path, builds: list[list[str]]) -> None:
    engine = StandInEngine()
    engine.images = {"shop-lb:2"}
    stack = make_stack(tmp_path, engine)
    # The cache is pulled by Compose itself (no build section); the loadbalancer is there.
    assert stack.build_missing(SPECS, ["db", "cache", "loadbalancer"]) == ["db"]
    assert builds == [["db"]]


def test_nothing_is_built_when_every_image_is_there(
    tmp_path: Path, builds: list[list[str]]
) -> None:
    engine = StandInEngine()
    engine.images = {"shop-db:15", "shop-lb:2"}
    assert make_stack(tmp_path, engine).build_missing(SPECS, ["db", "loadbalancer"]) == []
    assert builds == []


@pytest.fixture
def listener() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_a_listening_port_is_in_use_and_a_closed_one_is_free(listener: int) -> None:
    assert port_in_use(PublishedPort("127.0.0.1", listener))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert not port_in_use(PublishedPort("127.0.0.1", free))


def test_a_taken_port_names_its_setting(tmp_path: Path, listener: int) -> None:
    specs = {
        "loadbalancer": ServiceSpec(
            "lb", "lb:1", True, ports=(PublishedPort("127.0.0.1", listener),)
        )
    }
    stack = make_stack(tmp_path, StandInEngine(), env={"PUBLIC_HTTPS_PORT": str(listener)})
    with pytest.raises(PortInUse) as failure:
        stack.check_ports_free(specs)
    assert str(failure.value) == (
        f"port {listener} on 127.0.0.1, which loadbalancer publishes, is already in use by "
        f"another program: stop it, or set PUBLIC_HTTPS_PORT (in {tmp_path / '.env'} or the "
        "environment) to a free port"
    )


def test_a_taken_port_without_a_setting_points_at_the_compose_file(
    tmp_path: Path, listener: int
) -> None:
    specs = {
        "cache": ServiceSpec(
            "cache", "redis:7", False, ports=(PublishedPort("127.0.0.1", listener),)
        )
    }
    with pytest.raises(
        PortInUse, match="stop it, or change the ports of cache in the Compose file"
    ):
        make_stack(tmp_path, StandInEngine()).check_ports_free(specs)


def test_a_running_service_holds_its_own_ports(tmp_path: Path, listener: int) -> None:
    specs = {
        "loadbalancer": ServiceSpec(
            "lb", "lb:1", True, ports=(PublishedPort("127.0.0.1", listener),)
        )
    }
    engine = StandInEngine()
    engine.running = {"loadbalancer"}
    make_stack(tmp_path, engine).check_ports_free(specs)  # no error: those are its own


def test_repository_of_an_image_reference() -> None:
    assert repository("shop-backend:r3") == "shop-backend"
    assert repository("registry:5000/shop/web:r3") == "registry:5000/shop/web"
    assert repository("registry:5000/shop/web") == "registry:5000/shop/web"


def test_old_release_images_go_the_newest_and_the_protected_stay(tmp_path: Path) -> None:
    engine = StandInEngine()
    engine.tags = {
        "shop-backend": [(f"r{i}", float(i)) for i in range(1, 9)],
        "registry:5000/shop/web": [("r1", 1.0), ("r2", 2.0)],
        "shop-db": [("14", 1.0), ("15", 2.0)],  # not a colour's: never pruned
    }
    engine.in_use = {"shop-backend:r2"}  # a stopped container still uses it
    removed = make_stack(tmp_path, engine).prune_release_images(keep=3, protect=["r1"], specs=SPECS)
    # r8, r7, r6 are the newest three; r1 is protected (the previous colour's release).
    assert removed == ["shop-backend:r5", "shop-backend:r4", "shop-backend:r3"]
    assert "shop-backend:r2" not in engine.removed
