"""The swarm harness itself: nodes ready, an overlay across nodes, images from the registry,
host-mode ports, a dead node noticed and its tasks moved, the node back."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from tests.swarm.cluster import PROBE_IMAGE, ClusterError, SwarmCluster, ensure_image

pytestmark = [pytest.mark.integration, pytest.mark.swarm]

# Per run: another run's network may still be leaving the swarm.
NETWORK = f"bgswarm-test-net-{os.getpid()}"


def wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    """Poll ``check`` until true; the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"{what}: not within {timeout_s:g}s")
        time.sleep(0.25)
    return time.monotonic() - started


def running_tasks(cluster: SwarmCluster, service: str) -> list[str]:
    """The nodes of ``service``'s tasks that run now (one entry per task)."""
    shown = cluster.docker(
        cluster.manager, "service", "ps", service, "--filter", "desired-state=running",
        "--format", "{{.Node}} {{.CurrentState}}",
    )  # fmt: skip
    return [line.split()[0] for line in shown.splitlines() if " Running " in f" {line} "]


@pytest.fixture(scope="module")
def probe(swarm_cluster: SwarmCluster) -> Iterator[str]:
    """The probe image pushed to the registry, and an attachable overlay network for it."""
    ensure_image(PROBE_IMAGE)
    (reference,) = swarm_cluster.push(PROBE_IMAGE)
    manager = swarm_cluster.manager
    swarm_cluster.docker(manager, "network", "create", "-d", "overlay", "--attachable", NETWORK)
    yield reference

    def network_removed() -> bool:
        # Its services' tasks leave it a few seconds after `service rm` returns.
        try:
            swarm_cluster.docker(manager, "network", "rm", NETWORK, timeout=30)
        except ClusterError:
            return False
        return True

    wait_for(f"{NETWORK} removed", network_removed, 60)


@pytest.fixture
def service(swarm_cluster: SwarmCluster, probe: str) -> Iterator[Callable[..., str]]:
    """Create probe services by name (``bgswarm-test-*``); removed after the test."""
    made: list[str] = []

    def create(name: str, *options: str) -> str:
        full = f"bgswarm-test-{name}"
        swarm_cluster.docker(
            swarm_cluster.manager, "service", "create", "--quiet", "--detach",
            "--name", full, "--network", NETWORK, "--stop-grace-period", "1s", *options, probe,
        )  # fmt: skip
        made.append(full)
        return full

    yield create
    if made:
        swarm_cluster.docker(swarm_cluster.manager, "service", "rm", *made)


def test_every_node_is_ready_and_its_engine_answers_the_host(swarm_cluster: SwarmCluster) -> None:
    assert swarm_cluster.node_states() == {"node1": "ready", "node2": "ready", "node3": "ready"}
    assert [node.name for node in swarm_cluster.workers] == ["node2", "node3"]
    for node in swarm_cluster.nodes:
        shown = swarm_cluster.docker(
            node, "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"
        )
        assert shown == f"active {str(node.manager).lower()}", node
    assert swarm_cluster.env() == {"DOCKER_HOST": f"tcp://{swarm_cluster.manager.ip}:2375"}


def test_replicas_spread_over_the_nodes_pull_from_the_registry_and_see_each_other(
    swarm_cluster: SwarmCluster, service: Callable[..., str]
) -> None:
    name = service("spread", "--replicas", "3", "--replicas-max-per-node", "1",
                   "--endpoint-mode", "dnsrr")  # fmt: skip
    wait_for("3 tasks running", lambda: len(running_tasks(swarm_cluster, name)) == 3, 60)
    assert sorted(running_tasks(swarm_cluster, name)) == ["node1", "node2", "node3"]
    # Every worker pulled the image from the registry through its own 127.0.0.1:45000.
    for worker in swarm_cluster.workers:
        images = swarm_cluster.docker(worker, "images", "--format", "{{.Repository}}")
        assert f"{swarm_cluster.registry}/{PROBE_IMAGE.split(':')[0]}" in images.split()
    # From one task, the swarm's DNS names all three, and each answers across the overlay.
    manager = swarm_cluster.manager
    task = swarm_cluster.docker(manager, "ps", "-q", "--filter", f"name={name}.").split()[0]
    addresses: list[str] = []

    def all_three_named() -> bool:
        # A task on another node enters this node's DNS once the nodes' gossip brings it.
        looked_up = swarm_cluster.docker(manager, "exec", task, "nslookup", f"tasks.{name}")
        addresses[:] = [
            line.split()[-1] for line in looked_up.splitlines()[2:] if line.startswith("Address")
        ]
        return len(addresses) == 3

    named_after = wait_for("tasks.<service> naming 3 tasks", all_three_named, 30)
    print(f"tasks.{name} named all 3 tasks {named_after:.1f}s after they ran")
    answers = {swarm_cluster.docker(manager, "exec", task, "get", address) for address in addresses}
    assert len(answers) == 3, answers


def test_a_host_mode_port_answers_on_every_node_address(
    swarm_cluster: SwarmCluster, service: Callable[..., str]
) -> None:
    name = service("hostport", "--mode", "global",
                   "--publish", "mode=host,target=8080,published=48091")  # fmt: skip
    wait_for("a task on each node", lambda: len(running_tasks(swarm_cluster, name)) == 3, 60)
    answers = set()
    for node in swarm_cluster.nodes:
        with urllib.request.urlopen(f"http://{node.ip}:48091/", timeout=5) as answer:
            answers.add(answer.read().decode().strip())
    assert len(answers) == 3, answers


def test_a_killed_node_is_noticed_its_tasks_move_and_it_comes_back(
    swarm_cluster: SwarmCluster, service: Callable[..., str]
) -> None:
    name = service("moving", "--replicas", "3")
    wait_for("3 tasks running", lambda: len(running_tasks(swarm_cluster, name)) == 3, 60)
    victim = swarm_cluster.workers[-1]
    killed = time.monotonic()
    swarm_cluster.kill_node(victim.name)
    try:
        down = wait_for(
            f"{victim.name} down", lambda: swarm_cluster.node_states()[victim.name] == "down", 60
        )

        def moved() -> bool:
            nodes = running_tasks(swarm_cluster, name)
            return len(nodes) == 3 and victim.name not in nodes

        moved_after = down + wait_for("tasks rescheduled", moved, 60)
        print(f"{victim.name} down after {down:.1f}s, tasks running elsewhere after "
              f"{moved_after:.1f}s")  # fmt: skip
    finally:
        back_from = time.monotonic()
        swarm_cluster.restart_node(victim.name)
    print(f"{victim.name} ready again {time.monotonic() - back_from:.1f}s after its start "
          f"({time.monotonic() - killed:.1f}s after the kill)")  # fmt: skip
    assert swarm_cluster.node_states()[victim.name] == "ready"
    assert swarm_cluster.docker(victim, "info", "--format", "{{.Swarm.LocalNodeState}}") == "active"
