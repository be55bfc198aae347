"""The router over every loadbalancer replica of a swarm: one switch, confirmed on each replica.

Each replica is a stand-in runtime API (tests/unit/fake_haproxy.py); the real replicas on a real
multi-node swarm are exercised by tests/swarm.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_bluegreen.adapters.routers.haproxy import RuntimeAPI
from pytest_bluegreen.adapters.routers.haproxy_replicas import Replica, ReplicatedRouter
from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.errors import RouterError
from tests.unit.fake_haproxy import FakeRuntimeAPI

MAP = "/tmp/active.map"


class Cluster:
    """Fake replicas by node name, and the list Swarm would give (changeable between calls)."""

    def __init__(self, tmp_path: Path, nodes: list[str]) -> None:
        self.tmp_path = tmp_path
        self.fakes: dict[str, FakeRuntimeAPI] = {}
        self.listings: list[list[str]] = []  # successive answers of replicas(); last one sticks
        self.expected = 1
        for node in nodes:
            self.add(node)
        self.listings.append(list(nodes))

    def add(self, node: str, colour: str = "blue") -> FakeRuntimeAPI:
        fake = FakeRuntimeAPI(self.tmp_path / f"{node}.sock", MAP, colour)
        self.fakes[node] = fake
        return fake

    def replicas(self) -> list[Replica]:
        nodes = self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]
        return [Replica(task=f"task-{n}", node=n, address=n) for n in nodes]

    def router(self, confirm_timeout_s: float = 1.0, ready_s: float = 0.0) -> ReplicatedRouter:
        return ReplicatedRouter(
            replicas=self.replicas,
            port=9999,
            map_file=self.tmp_path / "active.map",
            backends_of=lambda colour: (f"api_{colour}",),
            expected_servers=lambda backend: self.expected,
            map_in_container=MAP,
            confirm_timeout_s=confirm_timeout_s,
            ready_timeout_s=ready_s,
            api_for=lambda replica: RuntimeAPI(self.tmp_path / f"{replica.node}.sock", 0.5),
        )

    def close(self) -> None:
        for fake in self.fakes.values():
            fake.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path, ["node1", "node2", "node3"])
    yield made
    made.close()


def colours(cluster: Cluster) -> dict[str, str]:
    return {node: fake.colour for node, fake in cluster.fakes.items()}


def test_a_switch_sets_every_replica_and_names_those_that_confirmed(cluster: Cluster) -> None:
    result = cluster.router().switch("green")

    assert colours(cluster) == {"node1": "green", "node2": "green", "node3": "green"}
    assert (result.from_colour, result.to_colour) == ("blue", "green")
    assert result.replicas == ("node1", "node2", "node3")
    assert (cluster.tmp_path / "active.map").read_text() == "active green\n"


def test_replicas_that_disagree_are_an_error_that_names_each(cluster: Cluster) -> None:
    cluster.fakes["node2"].colour = "green"

    with pytest.raises(RouterError, match="disagree") as caught:
        cluster.router().active_colour()

    assert "node1: blue" in str(caught.value)
    assert "node2: green" in str(caught.value)


def test_a_replica_that_restarted_on_the_old_colour_is_set_before_the_switch_is_confirmed(
    cluster: Cluster,
) -> None:
    # The preflight and the first confirmation see three replicas; then node3's replica has
    # restarted as a new task and adopted the old colour from a peer not yet switched.
    restarted = cluster.add("node3b", colour="blue")
    cluster.listings = [
        ["node1", "node2", "node3"],
        ["node1", "node2", "node3b"],
        ["node1", "node2", "node3b"],
    ]

    result = cluster.router().switch("green")

    assert restarted.colour == "green"
    assert "set map /tmp/active.map active green" in restarted.commands
    assert result.replicas == ("node1", "node2", "node3b")


def test_a_replica_that_never_confirms_fails_the_switch_and_traffic_is_put_back(
    cluster: Cluster,
) -> None:
    cluster.fakes["node3"].refuse_set_map = True  # answers, but its map never changes

    with pytest.raises(RouterError, match="not confirmed by every loadbalancer replica"):
        cluster.router(confirm_timeout_s=0.3).switch("green")

    assert set(colours(cluster).values()) == {"blue"}


def test_a_listed_replica_that_does_not_answer_is_waited_for_then_refused(
    cluster: Cluster,
) -> None:
    cluster.fakes.pop("node3").close()  # listed as running by Swarm, its API gone

    with pytest.raises(RouterError, match=r"refusing to switch to green: .*node3 unreachable"):
        cluster.router(ready_s=0.3).switch("green")

    assert set(colours(cluster).values()) == {"blue"}


def test_the_switch_is_refused_when_any_replica_sees_the_new_colour_down(cluster: Cluster) -> None:
    cluster.fakes["node2"].status["api_green"] = "DOWN"

    expected = r"not UP in HAProxy: api_green/node2/backend-green DOWN, api_green/node2/- 0/1 UP$"
    with pytest.raises(RouterError, match=expected):
        cluster.router().switch("green")

    assert set(colours(cluster).values()) == {"blue"}


def test_the_switch_waits_for_a_server_that_comes_up_within_its_bound(cluster: Cluster) -> None:
    # A task rescheduled off a lost node: DOWN on one replica for a moment, then UP.
    fake = cluster.fakes["node2"]
    fake.status["api_green"] = "DOWN"
    timer = threading.Timer(0.4, lambda: fake.status.update(api_green="UP"))
    timer.start()

    result = cluster.router(ready_s=10).switch("green")

    timer.join()
    assert set(colours(cluster).values()) == {"green"}
    assert result.preflight_ms >= 300


def test_empty_template_slots_do_not_count_and_missing_servers_do(cluster: Cluster) -> None:
    cluster.fakes["node1"].status["api_blue"] = "MAINT (resolution)"
    cluster.expected = 1
    router = cluster.router()

    not_ready = router.not_ready("blue")

    assert [(s.backend, s.server, s.status) for s in not_ready] == [
        ("api_blue", "node1/-", "0/1 UP")
    ]
    cluster.fakes["node1"].status["api_blue"] = "UP"
    assert router.not_ready("blue") == []
    cluster.expected = 2
    assert {s.status for s in router.not_ready("blue")} == {"1/2 UP"}


def test_an_unreachable_replica_is_not_ready(cluster: Cluster) -> None:
    cluster.fakes["node2"].close()
    del cluster.fakes["node2"]

    rows = cluster.router().not_ready("blue")

    assert [(r.server, r.status.split(":")[0]) for r in rows] == [("node2", "unreachable")]


def test_releases_go_to_every_replica(cluster: Cluster) -> None:
    for fake in cluster.fakes.values():
        fake.releases = {}
    releases: dict[Colour, str] = {"blue": "r1", "green": "r2"}

    cluster.router().publish_releases(releases, running=True)

    assert all(fake.releases == {"blue": "r1", "green": "r2"} for fake in cluster.fakes.values())


def test_no_running_replica_is_an_error(cluster: Cluster) -> None:
    cluster.listings = [[]]

    with pytest.raises(RouterError, match="no loadbalancer replica is running"):
        cluster.router().active_colour()
