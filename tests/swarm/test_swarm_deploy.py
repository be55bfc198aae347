"""Blue-green deploys on a real multi-node Docker Swarm: ``engine = "swarm"`` end to end.

Three Docker engines, each its own node (Docker-in-Docker containers of this machine, see
:mod:`tests.swarm.cluster`), one manager and two workers, images pulled by every node from a
local registry. The project is a copy of ``examples/swarm-shop`` (MariaDB pinned to the manager,
the API in two replicas per colour spread over the nodes, a worker per colour, HAProxy on every
node), deployed by ``pytest --bg-deploy`` with ``DOCKER_HOST`` naming the manager, as from a CI
machine. The journey, in order:

1. r1 on an empty swarm: every node's HAProxy serves it, the API replicas on distinct nodes;
2. r2 with a migration, the switch under load: no failed request, every replica switched;
3. r3 while a loadbalancer replica is killed just before the switch: the deploy confirms every
   live replica, and the restarted one serves the new colour too;
4. a rollback after that switch; a broken r4 stopped before its switch;
5. a worker node lost during the gates, then another during the bake: the deploy ends with a
   colour that serves, verified, no row lost, and the lost node's tasks running elsewhere.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import tomli_w
import tomllib
from prometheus_client.parser import text_string_to_metric_families
from requests.adapters import HTTPAdapter

from pytest_bluegreen.adapters.routers.haproxy import RuntimeAPI, parse_show_map
from tests.swarm.cluster import Node, SwarmCluster

pytestmark = [pytest.mark.integration, pytest.mark.swarm]

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("BASE_IMAGE", "debian:bookworm-slim")
PROJECT = "bgswarm-shop"
DEPLOY_TIMEOUT_S = 900
# Budgets for 2 shared cores running three Docker engines: failed requests keep the budget 0.
SETTINGS: dict[str, Any] = {
    "project_name": PROJECT,
    "build_host": "unix:///var/run/docker.sock",  # built here, pushed, pulled by the nodes
    "load_p99_budget_ms": 2000,
    "latency_p50_budget_ms": 1000,
    "latency_p99_budget_ms": 3000,
    "latency_margin_ms": 2000,
    "bake_s": 8,
    "healthy_timeout_s": 240,
}
BROKEN = (
    "../shop-mariadb/app/api.py",
    "self.send_json(200, latest_orders(LIST_LIMIT))",
    "self.send_json(500, latest_orders(LIST_LIMIT))",
)
MIGRATION = (
    "../shop-mariadb/app/migrations/0003_order_notes.sql",
    "",
    "ALTER TABLE orders ADD COLUMN notes VARCHAR(200) NULL;\n",
)


class PublicName(HTTPAdapter):
    """Verify every node's certificate against the one public name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_hostname"] = self.name
        super().init_poolmanager(*args, **kwargs)


@dataclass
class SwarmShop:
    """The copy of the example, deployed to the cluster from this machine."""

    cluster: SwarmCluster
    home: Path
    outputs: list[str] = field(default_factory=list)

    def env(self, chaos: str = "") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
        env.update(self.cluster.env())  # DOCKER_HOST: the manager
        env.update(BASE_IMAGE=BASE_IMAGE, BGSWARM_PROJECT=PROJECT, BGSWARM_CHAOS=chaos)
        return env

    def pytest(self, *args: str, chaos: str = "") -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider"],
            cwd=self.home,
            env=self.env(chaos),
            capture_output=True,
            text=True,
            timeout=DEPLOY_TIMEOUT_S,
            check=False,
        )
        self.outputs.append(result.stdout + result.stderr)
        return result

    def deploy(self, release: str, chaos: str = "") -> dict[str, Any]:
        result = self.pytest("--bg-deploy", "--bg-release", release, chaos=chaos)
        record = self.last_record()
        assert record["release"] == release, result.stdout[-4000:] + result.stderr[-2000:]
        record["_returncode"] = result.returncode
        record["_output"] = result.stdout[-6000:] + result.stderr[-2000:]
        return record

    def last_record(self) -> dict[str, Any]:
        records = sorted((self.home / ".bluegreen" / "deploys").glob("*.json"))
        assert records, "no deploy record"
        data: dict[str, Any] = json.loads(records[-1].read_text(encoding="utf-8"))
        return data

    def edit(self, change: tuple[str, str, str], undo: bool = False) -> None:
        path, old, new = change
        target = self.home / path
        if not old:
            if undo:
                target.unlink()
            else:
                target.write_text(new, encoding="utf-8")
            return
        text = target.read_text(encoding="utf-8")
        old, new = (new, old) if undo else (old, new)
        assert text.count(old) == 1, f"{path}: {old!r} is not there once"
        target.write_text(text.replace(old, new), encoding="utf-8")

    @property
    def ca(self) -> str:
        return str(self.home / ".bluegreen" / "tls" / "ca.pem")

    def session(self) -> requests.Session:
        """A client that verifies the certificate as issued for the public host.

        Users reach every node under that one name (DNS); here the name is the manager's
        address, and a request to another node is checked against it.
        """
        session = requests.Session()
        session.trust_env = False
        session.mount("https://", PublicName(self.cluster.manager.ip))
        return session

    def get(self, node: Node, path: str = "/health") -> requests.Response:
        """A user's request through the HAProxy replica on ``node``."""
        with self.session() as session:
            return session.get(f"https://{node.ip}:443{path}", verify=self.ca, timeout=10)

    def post_order(self, customer: str) -> None:
        with self.session() as session:
            answer = session.post(
                f"https://{self.cluster.manager.ip}:443/api/orders",
                json={"customer": customer, "item": "cup", "quantity": 1},
                verify=self.ca,
                timeout=10,
            )
        assert answer.status_code == 201, answer.text

    def lb_colour(self, node: Node) -> str:
        """The live colour in the map of the loadbalancer replica on ``node``."""
        answer = RuntimeAPI((node.ip, 9999)).execute("show map /tmp/active.map")
        return parse_show_map(answer)["active"]

    def serves(self, node: Node) -> tuple[str, str]:
        answer = self.get(node)
        assert answer.status_code == 200, answer.text
        return answer.headers["X-Bluegreen-Colour"], answer.headers["X-Bluegreen-Release"]

    def rows(self) -> int:
        """Orders in the live database, counted on the manager where MariaDB runs."""
        manager = self.cluster.manager
        label = f"label=com.docker.swarm.service.name={PROJECT}_db"
        (container,) = self.cluster.docker(manager, "ps", "-q", "--filter", label).split()
        sql = "SELECT COUNT(*) FROM shop.orders"
        out = self.cluster.docker(manager, "exec", container, "mariadb", "-N", "-e", sql)
        return int(out.strip())

    def placement(self, service: str) -> list[str]:
        """The nodes running ``service``'s tasks, as the manager says."""
        out = self.cluster.docker(
            self.cluster.manager,
            "service",
            "ps",
            f"{PROJECT}_{service}",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
        )
        return sorted(line.split()[0] for line in out.splitlines() if " Running " in f" {line} ")

    def wait_full_strength(
        self, services: list[str], wanted: int, lost: str, timeout_s: float = 240
    ) -> None:
        """Until each service runs ``wanted`` tasks, none on the ``lost`` node.

        Right after a node stops, the manager still lists its tasks as running until it marks
        the node down (a few heartbeats); a deploy that ends quickly ends before that.
        """
        deadline = time.monotonic() + timeout_s

        def short(service: str) -> bool:
            where = self.placement(service)
            return len(where) < wanted or lost in where

        while any(short(s) for s in services):
            if time.monotonic() > deadline:
                where = {s: self.placement(s) for s in services}
                pytest.fail(f"not back to {wanted} running tasks each, off {lost}: {where}")
            time.sleep(2)


@pytest.fixture(scope="module")
def shop(
    swarm_cluster: SwarmCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SwarmShop]:
    cluster = swarm_cluster
    root = tmp_path_factory.mktemp("swarm") / "examples"
    for name in ("swarm-shop", "shop-mariadb"):
        shutil.copytree(REPO / "examples" / name, root / name)
    home = root / "swarm-shop"
    shutil.copy(Path(__file__).with_name("project_conftest.py"), home / "conftest.py")
    lines = []
    for line in (home / ".env.example").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and "PASSWORD" in key:
            value = secrets.token_hex(16)
        elif sep and key == "REGISTRY":
            value = cluster.registry
        lines.append(f"{key}={value}" if sep else line)
    (home / ".env").write_text("\n".join(lines) + f"\nBASE_IMAGE={BASE_IMAGE}\n")
    settings = tomllib.loads((home / "bluegreen.toml").read_text())
    settings.update(SETTINGS)
    settings.update(public_host=cluster.manager.ip, preview_host=cluster.manager.ip)
    (home / "bluegreen.toml").write_text(tomli_w.dumps(settings))
    made = SwarmShop(cluster, home)
    yield made
    subprocess.run(
        [sys.executable, "-m", "pytest_bluegreen", "--project-dir", str(home), "down", "--volumes"],
        env=made.env(),
        capture_output=True,
        timeout=300,
        check=False,
    )


def stage_outcomes(record: dict[str, Any]) -> dict[str, str]:
    return {stage["name"]: stage["outcome"] for stage in record["stages"]}


def test_a_first_release_spreads_over_the_nodes(shop: SwarmShop) -> None:
    record = shop.deploy("r1")

    assert (record["_returncode"], record["result"]) == (0, "deployed"), record["_output"]
    nodes = shop.cluster.nodes
    assert {shop.serves(node) for node in nodes} == {("blue", "r1")}  # every node's HAProxy
    api = shop.placement("api-blue")
    assert len(set(api)) == len(api) == 2, api  # two replicas, two nodes
    assert sorted(shop.placement("loadbalancer")) == sorted(n.name for n in nodes)
    assert shop.placement("db") == [shop.cluster.manager.name]
    assert shop.placement("worker-blue"), "the first release's worker runs"
    # The record, the HTML report and the metrics say which node ran what.
    assert sorted(record["placement"]["api-blue"]) == api
    html = Path(record["reports"]["html"]).read_text(encoding="utf-8")
    assert 'id="bluegreen-placement"' in html
    assert all(node in html for node in api)
    metrics = (shop.home / ".bluegreen" / "metrics" / "bluegreen.prom").read_text()
    tasks = {
        sample.labels["node"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "bluegreen_service_tasks" and sample.labels["service"] == "api-blue"
    }
    assert tasks == dict.fromkeys(api, 1.0)


def test_a_release_with_a_migration_switches_every_replica_under_load(shop: SwarmShop) -> None:
    for n in range(5):
        shop.post_order(f"before-r2-{n}")
    rows = shop.rows()
    shop.edit(MIGRATION)

    record = shop.deploy("r2")

    assert (record["_returncode"], record["result"]) == (0, "deployed"), record["_output"]
    assert record["load"]["total"]["requests"] > 0
    assert record["load"]["total"]["failures"] == 0  # the switch under load lost nothing
    assert record["migration"]["applied"] == ["0003_order_notes"]
    assert record["backup"]["row_counts"]["orders"] >= rows  # verified by a restore
    names = sorted(n.name for n in shop.cluster.nodes)
    assert sorted(record["switch"]["replicas"]) == names  # confirmed on every node's replica
    assert {shop.lb_colour(node) for node in shop.cluster.nodes} == {"green"}
    assert {shop.serves(node) for node in shop.cluster.nodes} == {("green", "r2")}
    assert shop.rows() == rows
    assert shop.placement("worker-green")
    assert not shop.placement("worker-blue")
    assert not shop.placement("api-blue")  # retired: scaled to 0 after the bake


def test_a_loadbalancer_replica_killed_before_the_switch(shop: SwarmShop) -> None:
    node3 = shop.cluster.workers[-1]
    target = f"tcp://{node3.ip}:2375"

    record = shop.deploy("r3", chaos=f"gates:kill-lb:{target}")

    assert (record["_returncode"], record["result"]) == (0, "deployed"), record["_output"]
    chaos = (shop.home / ".bluegreen" / "chaos.log").read_text()
    assert f"kill-lb {target}" in chaos
    assert record["load"]["total"]["failures"] == 0
    # Every replica running at the switch confirmed it; the one that restarted serves it too.
    assert set(record["switch"]["replicas"]) <= {n.name for n in shop.cluster.nodes}
    deadline = time.monotonic() + 120
    while len(shop.placement("loadbalancer")) < 3 and time.monotonic() < deadline:
        time.sleep(1)
    assert {shop.lb_colour(node) for node in shop.cluster.nodes} == {"blue"}
    assert {shop.serves(node) for node in shop.cluster.nodes} == {("blue", "r3")}


def test_a_rollback_then_a_broken_release_stopped_before_its_switch(shop: SwarmShop) -> None:
    rollback = shop.pytest("--bg-rollback")
    assert rollback.returncode == 0, rollback.stdout[-3000:] + rollback.stderr[-2000:]
    assert {shop.serves(node) for node in shop.cluster.nodes} == {("green", "r2")}

    shop.edit(BROKEN)
    record = shop.deploy("r4-broken")
    shop.edit(BROKEN, undo=True)

    assert record["_returncode"] != 0
    assert record["result"] == "aborted", record.get("error")
    assert stage_outcomes(record).get("switch") != "passed"
    assert {shop.serves(node) for node in shop.cluster.nodes} == {("green", "r2")}
    assert not shop.placement("api-blue")  # the aborted colour was stopped


@pytest.mark.parametrize(
    ("release", "after", "node_index"),
    [("r5", "bring_up", 1), ("r6", "verify", 2)],
    ids=["node-lost-during-the-gates", "node-lost-during-the-bake"],
)
def test_a_worker_node_lost_mid_deploy(
    shop: SwarmShop, release: str, after: str, node_index: int
) -> None:
    cluster = shop.cluster
    lost = cluster.nodes[node_index]
    rows = shop.rows()

    record = shop.deploy(release, chaos=f"{after}:stop-node:{lost.container}")
    try:
        assert f"stop-node {lost.container}" in (shop.home / ".bluegreen" / "chaos.log").read_text()
        # Whatever the deploy decided, it ended on a colour it verified, and says which.
        assert record["result"] in ("deployed", "aborted", "rolled_back"), record["_output"]
        live = record["to_colour"] if record["result"] == "deployed" else record["from_colour"]
        manager = cluster.manager
        colour, _ = shop.serves(manager)
        assert colour == live, record["_output"]
        assert shop.rows() == rows  # no row lost
        # The live colour's tasks were rescheduled off the lost node, at full strength.
        shop.wait_full_strength([f"api-{live}"], wanted=2, lost=lost.name)
        assert len(set(shop.placement(f"api-{live}"))) == 2  # still one per node
        for path in ("/health", "/api/orders"):
            assert shop.get(manager, path).status_code == 200
    finally:
        cluster.restart_node(lost.name)
        cluster.wait_nodes_ready(timeout_s=120)
