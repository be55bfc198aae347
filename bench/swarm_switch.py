"""Releasing on a Docker Swarm under load: our switch against Swarm's start-first rolling update.

On the swarm of Docker-in-Docker nodes of :mod:`tests.swarm.cluster` (reused when running), one
stack ``bgbench-swarm`` (``bench/swarm/stack.yml``): HAProxy on every node (``mode: global``,
the image of ``examples/swarm-shop/haproxy`` with ``bench/swarm/haproxy.cfg`` as a Swarm config,
servers from ``server-template`` on ``tasks.<service>`` through Docker's DNS), and a tiny web
service (``bench/swarm/web``: http.server answering its version, v1 or v2, in a header) in three
services of 2 replicas each, one per node at most. Under the same bounded, open-loop HTTPS load
(:mod:`bench.loadgen`: keep-alive and new-connection clients) sent to the manager node's
HAProxy replica, each mechanism moves traffic from v1 to v2:

- ``runtime-api``: blue-green. ``web-blue`` runs v1 and is live; before the load, ``web-green``
  is started at v2 (from 0 to 2 replicas) and waited for until every HAProxy replica sees both
  its tasks UP (``prepare_s``, outside the load). Under load: ``ReplicatedRouter.switch`` (the
  deploy's switch: preflight on every replica, ``set map`` on all at once, confirmed on every
  running replica) and ``drain``; then, as a deploy's retire stage does, ``web-blue`` scaled to
  0, still under load.
- ``start-first``: one service ``web`` at v1, updated under load by
  ``docker service update --update-order start-first --image <v2>`` (Swarm's defaults
  otherwise: one task at a time, each new task healthy before its old one stops), as Dokploy
  and similar tools release, behind the same HAProxy (``server-template`` on ``tasks.web``).

Both images are pulled on every node beforehand, so no run pays for a pull. Per run: failed
requests; time from the command to the start of the last request v1 answered (until every new
request lands on v2; "-" when not within the load); p99 before the command (from 1 s into the
load), in the second after it, and over the change (command to last v1 answer, at least 1 s);
the command's own duration (ours: switch and drain; start-first: the CLI until it returns,
converged). Medians over ``--reps``; a table with the goals met or missed, and
``bench/results/swarm_switch.json``. The stack is removed at the end (the cluster stays). A run
during which a node restarted or was not ready (other tests share the cluster) is run again and
kept apart in the JSON.

    BASE_IMAGE=bluegreen-base:bookworm .venv/bin/python bench/swarm_switch.py [--reps 3]
        [--rate N --seconds S]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import docker  # noqa: E402

from bench.common import (  # noqa: E402
    client_figures,
    host_info,
    log,
    median,
    moved_after,
    publish,
    render_table,
    wait_until,
)
from bench.loadgen import LoadPlan, LoadResult, RunningLoad  # noqa: E402
from pytest_bluegreen.adapters.engines.swarm import SwarmTasks  # noqa: E402
from pytest_bluegreen.adapters.routers.haproxy_replicas import ReplicatedRouter  # noqa: E402
from pytest_bluegreen.adapters.routers.tls import ca_path, ensure_certificate  # noqa: E402
from pytest_bluegreen.core import load_figures as load  # noqa: E402
from pytest_bluegreen.core.colours import Colour  # noqa: E402
from pytest_bluegreen.core.errors import RouterError  # noqa: E402
from tests.swarm.cluster import ClusterError, SwarmCluster, base_image, start_cluster  # noqa: E402

HERE: Final = REPO / "bench" / "swarm"
LB_CONTEXT: Final = REPO / "examples" / "swarm-shop" / "haproxy"
STACK: Final = "bgbench-swarm"
WEB_IMAGE: Final = "bluegreen-swarm-bench-web"
LB_IMAGE: Final = "bluegreen-swarm-bench-lb:1"
OLD: Final = "v1"
NEW: Final = "v2"
REPLICAS: Final = 2
MECHANISMS: Final = ("runtime-api", "start-first")
WARMUP_S: Final = 1.0  # left out of "p99 before"
ATTEMPTS: Final = 3  # runs of one repetition when other users of the cluster disturb them
COLUMNS: Final = (
    ("requests", "requests"),
    ("failed", "failed"),
    ("effective_ms", "to 100% new (ms)"),
    ("old_after", "v1 answers after"),
    ("p99_before_ms", "p99 before"),
    ("p99_first_s_ms", "p99 1st s after"),
    ("p99_change_ms", "p99 over change"),
    ("command_ms", "command (ms)"),
    ("prepare_s", "v2 started before (s)"),
)
GOALS: Final = {
    "failed": "our switch: 0 failed requests over every run (switch, drain, old colour retired)",
    "effective_ms": "our switch: every new request on v2 at most 1/10 of start-first's time "
    "(same run, same load)",
}


def ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


class Swarm:
    """The bench's stack on the cluster: docker CLI on the manager, tasks, HAProxy replicas."""

    def __init__(self, cluster: SwarmCluster, ports: dict[str, int], work: Path) -> None:
        self.cluster = cluster
        self.ports = ports
        self.work = work
        self.client = docker.DockerClient(base_url=cluster.manager.docker_host, timeout=60)
        self.tasks = SwarmTasks(STACK, client=self.client)
        self.images = {
            OLD: f"{cluster.registry}/{WEB_IMAGE}:{OLD}",
            NEW: f"{cluster.registry}/{WEB_IMAGE}:{NEW}",
        }
        self.lb_image = f"{cluster.registry}/{LB_IMAGE}"
        self.pem = work / "tls" / "site.pem"
        self.bluegreen = self._router(lambda colour: [f"web_{colour}"])
        # The rolling route as a "router" whose every colour is the one backend ``web``: only
        # to wait until each replica sees exactly the service's tasks UP.
        self.rolling = self._router(lambda colour: ["web"])

    def _router(self, backends: Callable[[Colour], Sequence[str]]) -> ReplicatedRouter:
        service = {"web_blue": "web-blue", "web_green": "web-green", "web": "web"}
        return ReplicatedRouter(
            replicas=lambda: self.tasks.replicas_of("loadbalancer"),
            port=self.ports["admin"],
            map_file=self.work / "active.map",
            backends_of=backends,
            expected_servers=lambda backend: self.tasks.replicas(service[backend]),
            map_in_container="/tmp/active.map",
        )

    def docker(self, *args: str, timeout: float = 180) -> str:
        return self.cluster.docker(self.cluster.manager, *args, timeout=timeout)

    # -- images and stack ---------------------------------------------------------------------

    def build_images(self) -> None:
        """Build (cached) and push the web image at v1 and v2 and the loadbalancer image."""
        base = base_image()
        builds = [
            (f"{WEB_IMAGE}:{v}", HERE / "web", ["--build-arg", f"VERSION={v}"]) for v in (OLD, NEW)
        ]
        builds.append((LB_IMAGE, LB_CONTEXT, []))
        for tag, context, extra in builds:
            log(f"building {tag} from {base}")
            argv = ["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", *extra]
            run([*argv, "-t", tag, str(context)], timeout=900)
        self.cluster.push(*(tag for tag, _, _ in builds))
        for node in self.cluster.nodes:  # no run pays for a pull
            for image in (*self.images.values(), self.lb_image):
                self.cluster.docker(node, "pull", "-q", image, timeout=300)

    def deploy(self) -> None:
        self.remove()
        ensure_certificate(
            self.pem,
            hostnames=("localhost",),
            addresses=("127.0.0.1", *(n.ip for n in self.cluster.nodes)),
        )
        config = (HERE / "haproxy.cfg").read_bytes()
        env = {
            **os.environ,
            **self.cluster.env(),
            "WEB_V1": self.images[OLD],
            "WEB_V2": self.images[NEW],
            "LB_IMAGE": self.lb_image,
            "BLUEGREEN_PORT": str(self.ports["bluegreen"]),
            "ROLLING_PORT": str(self.ports["rolling"]),
            "ADMIN_PORT": str(self.ports["admin"]),
            "HAPROXY_CFG_NAME": f"{STACK}-haproxy-{hashlib.sha256(config).hexdigest()[:12]}",
            "SITE_PEM_NAME": f"{STACK}-site-{time.time_ns()}",
            "SITE_PEM": str(self.pem),
        }
        argv = ["docker", "stack", "deploy", "--prune", "-c", str(HERE / "stack.yml"), STACK]
        run(argv, env=env, timeout=180)
        self.wait_converged(["web-blue", "web-green", "web", "loadbalancer"])
        self.bluegreen.wait_ready("blue", 120)
        self.bluegreen.wait_ready("green", 120)
        self.rolling.wait_ready("blue", 120)

    def remove(self) -> None:
        """Remove the stack (a leftover of a killed run too), bounded wait until it is gone."""
        if not self.docker("stack", "ls", "--format", "{{.Name}}").split().count(STACK):
            return
        self.docker("stack", "rm", STACK)

        def gone() -> bool:
            label = f"label={STACK_LABEL}={STACK}"
            services = self.docker("service", "ls", "-q", "--filter", label)
            return not services and not self.docker("network", "ls", "-q", "--filter", label)

        if wait_until(gone, 120, interval_s=1) is None:
            raise RuntimeError(f"stack {STACK} not gone 120 s after docker stack rm")

    # -- services ----------------------------------------------------------------------------

    def service(self, name: str) -> str:
        return f"{STACK}_{name}"

    def update(self, name: str, *args: str) -> None:
        self.docker("service", "update", "--detach=false", "-q", *args, self.service(name))

    def converged(self, name: str) -> bool:
        """Every wanted task of ``name`` runs its spec's image, and no other task is running."""
        spec = self.tasks.service(name)
        if spec is None:
            return False
        want = self.tasks.replicas(name)
        image = spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        running = [t for t in self.tasks.tasks(name) if t["Status"]["State"] == "running"]
        current = [
            t
            for t in running
            if t["DesiredState"] == "running" and t["Spec"]["ContainerSpec"]["Image"] == image
        ]
        return len(current) == want and len(running) == want

    def wait_converged(self, names: Sequence[str], timeout_s: float = 180) -> None:
        if wait_until(lambda: all(self.converged(n) for n in names), timeout_s, 0.5) is None:
            raise RuntimeError(f"{', '.join(names)} not converged after {timeout_s:.0f}s")

    def image_of(self, name: str) -> str:
        spec = self.tasks.service(name)
        assert spec is not None
        return str(spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])


def run(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 120) -> str:
    done = subprocess.run(
        list(argv), capture_output=True, text=True, env=env, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


STACK_LABEL: Final = "com.docker.stack.namespace"


def settled(router: ReplicatedRouter, colour: Colour) -> bool:
    """Every replica sees exactly the service's tasks UP, none DOWN (stale ones resolved away)."""
    try:
        rows = router.servers(colour)
    except RouterError:
        return False
    if any(not row.up for row in rows):
        return False
    per_node = Counter(row.server.split("/", 1)[0] for row in rows)
    replicas = router.replicas()
    return len(per_node) == len(replicas) and set(per_node.values()) == {REPLICAS}


class Mechanism:
    """A way to release v2 under load, on the bench's stack."""

    name = ""
    description = ""
    port_key = ""

    def __init__(self, swarm: Swarm, retire_after_s: float) -> None:
        self.swarm = swarm
        self.retire_after_s = retire_after_s

    @property
    def port(self) -> int:
        return self.swarm.ports[self.port_key]

    def reset(self) -> dict[str, Any]:
        """v1 live everywhere, v2 ready where the mechanism needs it; outside the load."""
        raise NotImplementedError

    def change(self) -> dict[str, Any]:
        """The command that releases v2; its timings (``command_ms`` at least)."""
        raise NotImplementedError

    def settle(self, command_at: float, load_end: float) -> dict[str, Any]:
        return {}


class RuntimeAPISwitch(Mechanism):
    name = "runtime-api"
    port_key = "bluegreen"
    description = (
        "blue-green: web-green (v2) started beside the live web-blue (v1) before the load and "
        "waited for UP on every HAProxy replica (prepare_s); under load ReplicatedRouter.switch "
        "(preflight on every replica, set map on all, confirmed on every running one) and drain, "
        "then web-blue scaled to 0 (retired) under the same load"
    )

    def reset(self) -> dict[str, Any]:
        swarm, router = self.swarm, self.swarm.bluegreen
        if swarm.tasks.replicas("web-blue") != REPLICAS:
            swarm.update("web-blue", "--replicas", str(REPLICAS))
        swarm.wait_converged(["web-blue"])
        router.wait_ready("blue", 120)
        if router.active_colour() != "blue":
            router.switch("blue")
        swarm.update("web-green", "--replicas", "0")
        start = time.perf_counter()
        swarm.update("web-green", "--replicas", str(REPLICAS))
        if wait_until(lambda: settled(router, "green"), 120, 0.1) is None:
            raise RuntimeError("web-green not UP on every HAProxy replica after 120 s")
        prepare_s = round(time.perf_counter() - start, 2)
        if wait_until(lambda: settled(router, "blue"), 60, 0.1) is None:
            raise RuntimeError("web-blue not settled on every HAProxy replica after 60 s")
        return {"prepare_s": prepare_s}

    def change(self) -> dict[str, Any]:
        router = self.swarm.bluegreen
        start = time.perf_counter()
        result = router.switch("green")
        drain = router.drain("blue", 30)
        return {
            "command_ms": ms_since(start),
            "preflight_ms": round(result.preflight_ms, 3),
            "set_map_ms": round(result.switch_ms, 3),
            "verify_ms": round(result.verify_ms, 3),
            "drain_ms": round(drain.waited_s * 1000, 3),
            "replicas": list(result.replicas),
        }

    def settle(self, command_at: float, load_end: float) -> dict[str, Any]:
        """Retire v1 as a deploy does (drained above, then scaled to 0), under the load."""
        time.sleep(max(0.0, command_at + self.retire_after_s - time.time()))
        started = time.time()
        self.swarm.update("web-blue", "--replicas", "0")
        stopped = time.time()
        return {
            "retire_started_at": started,
            "retire_s": round(stopped - started, 3),
            "retired_before_load_end": stopped < load_end - 1,
        }


class StartFirstUpdate(Mechanism):
    name = "start-first"
    port_key = "rolling"
    description = (
        "Swarm's rolling update of one service web (2 replicas, one per node at most): "
        "docker service update --update-order start-first --image <v2> under load (parallelism "
        "1, Swarm's default 5 s monitor; each new task healthy before its old task gets "
        "SIGTERM); command: the CLI until it returns (converged)"
    )

    def reset(self) -> dict[str, Any]:
        swarm = self.swarm
        if not swarm.image_of("web").startswith(swarm.images[OLD]):
            swarm.update("web", "--image", swarm.images[OLD])
        swarm.wait_converged(["web"])
        if wait_until(lambda: settled(swarm.rolling, "blue"), 120, 0.1) is None:
            raise RuntimeError("web (v1) not settled on every HAProxy replica after 120 s")
        return {}

    def change(self) -> dict[str, Any]:
        swarm = self.swarm
        start = time.perf_counter()
        swarm.docker(
            "service", "update", "--detach=false", "-q", "--update-order", "start-first",
            "--image", swarm.images[NEW], swarm.service("web"), timeout=300,
        )  # fmt: skip
        return {"command_ms": ms_since(start), "command_end": time.time()}

    def settle(self, command_at: float, load_end: float) -> dict[str, Any]:
        """When Swarm started each v2 task and stopped each v1 task (s after the command)."""
        started, stopped = [], []
        for task in self.swarm.tasks.tasks("web"):
            at = epoch(task["Status"]["Timestamp"]) - command_at
            created = epoch(task["CreatedAt"]) - command_at
            image = task["Spec"]["ContainerSpec"]["Image"]
            shutdown = task["DesiredState"] == "shutdown"
            if image.startswith(self.swarm.images[NEW]) and created > 0:
                started.append(round(created, 2))
            elif image.startswith(self.swarm.images[OLD]) and shutdown and at > 0:
                stopped.append(round(at, 2))
        return {"v2_tasks_created_s": sorted(started), "v1_tasks_stopped_s": sorted(stopped)}


def epoch(timestamp: str) -> float:
    """Docker's RFC 3339 time with nanoseconds, as epoch seconds."""
    whole, _, fraction = timestamp.rstrip("Z").partition(".")
    parsed = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S")
    seconds = parsed.replace(tzinfo=datetime.timezone.utc).timestamp()
    return seconds + float(f"0.{fraction or 0}")


def analyse(
    mechanism: Mechanism,
    result: LoadResult,
    command_at: float,
    timings: dict[str, Any],
    plan: LoadPlan,
    load_start: float,
) -> dict[str, Any]:
    samples = result.samples
    warm = [s for s in samples if s.t >= load_start + WARMUP_S]
    figures = load.figures(warm, command_at, OLD)
    effective = moved_after(samples, command_at, OLD, NEW)
    # The command outlasting the load: the last v1 answer may be after the load ended.
    end = timings.get("command_end", command_at)
    outlasted = end > load_start + plan.seconds - 1
    if outlasted:
        effective = None
    change_end = command_at + max(1.0, (effective or 0.0) / 1000)
    change = sorted(s.ms for s in samples if command_at <= s.t < change_end)
    errors = Counter(s.error for s in samples if s.error)
    row: dict[str, Any] = {
        "mechanism": mechanism.name,
        "requests": len(samples),
        "failed": sum(not s.ok for s in samples),
        "failed_after_command": sum(1 for s in samples if s.t >= command_at and not s.ok),
        "effective_ms": effective,
        "old_after": sum(1 for s in samples if s.t >= command_at and s.colour == OLD),
        "p99_before_ms": figures.before.p99_ms,
        "p99_first_s_ms": figures.first_second.p99_ms,
        "p99_change_ms": round(load.percentile(change, 99), 3),
        "p50_before_ms": figures.before.p50_ms,
        "p50_first_s_ms": figures.first_second.p50_ms,
        "keepalive_closed": sum(1 for c in result.closures if c.t >= command_at),
        "command_at_s": round(command_at - load_start, 3),
        "command_outlasted_load": outlasted,
        **{k: v for k, v in timings.items() if k not in ("retire_started_at", "command_end")},
        "client": client_figures(result, plan.seconds, plan.rate),
        "errors": dict(errors.most_common(5)),
        "failed_at_s": sorted({round(s.t - command_at, 1) for s in samples if not s.ok})[:20],
        "per_second": [
            {k: sec[k] for k in ("t", "requests", "failures", "p99_ms")} for sec in figures.series
        ],
    }
    retire_at = timings.get("retire_started_at")
    if retire_at is not None:
        row["failed_from_retire"] = sum(1 for s in samples if s.t >= retire_at and not s.ok)
    return row


def run_once(
    mechanism: Mechanism, plan: LoadPlan, switch_at_s: float, workdir: Path
) -> dict[str, Any]:
    """Reset (outside the load), then the load with the change at ``switch_at_s``."""
    prepared = mechanism.reset()
    running = RunningLoad(plan, workdir)
    try:
        time.sleep(max(0.0, running.start_at + switch_at_s - time.time()))
        command_at = time.time()
        timings = {**prepared, **mechanism.change()}
        timings.update(mechanism.settle(command_at, running.end_at))
        result = running.wait()
    finally:
        running.kill()
    return analyse(mechanism, result, command_at, timings, plan, running.start_at)


def cluster_marks(cluster: SwarmCluster) -> list[str]:
    """Each node container's start time and swarm state: they change when a run is disturbed."""
    containers = [node.container for node in cluster.nodes]
    started = run(["docker", "inspect", "-f", "{{.State.StartedAt}}", *containers]).split()
    try:
        states = cluster.node_states()
    except ClusterError:
        states = {}
    return started + [f"{name}={states.get(name)}" for name in cluster.names()]


def undisturbed_run(
    cluster: SwarmCluster,
    mechanism: Mechanism,
    plan: LoadPlan,
    switch_at_s: float,
    work: Path,
    disturbed: list[dict[str, Any]],
) -> dict[str, Any]:
    """One run with every node up and ready throughout; a disturbed one is run again (twice).

    Other sessions' tests stop nodes of the same cluster at times: before a run, wait (bounded)
    until every node is ready; a run during which a node restarted or was not ready is kept
    apart (``disturbed``), not measured.
    """
    for attempt in range(1, ATTEMPTS + 1):
        cluster.wait_nodes_ready(300)
        before = cluster_marks(cluster)
        try:
            row = run_once(mechanism, plan, switch_at_s, work / "load")
        except (RuntimeError, RouterError) as failure:
            if cluster_marks(cluster) == before:
                raise
            row = {"mechanism": mechanism.name, "error": str(failure)[:500]}
        after = cluster_marks(cluster)
        if after == before:
            return row
        log(f"{mechanism.name}: run disturbed (nodes: {before} -> {after}); attempt {attempt}")
        disturbed.append({**row, "nodes_before": before, "nodes_after": after})
        time.sleep(5)
    raise RuntimeError(f"{mechanism.name}: {ATTEMPTS} runs in a row disturbed by node changes")


def summarise(runs: list[dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        mine = [r for r in runs if r["mechanism"] == name]
        if not mine:
            continue
        row: dict[str, Any] = {"mechanism": name, "reps": len(mine)}
        for key, _ in COLUMNS:
            row[key] = median([r.get(key) for r in mine])
        row["requests_total"] = sum(r["requests"] for r in mine)
        row["failed_total"] = sum(r["failed"] for r in mine)
        row["never_moved"] = sum(1 for r in mine if r["effective_ms"] is None)
        for part in ("prepare_s", "preflight_ms", "set_map_ms", "verify_ms", "drain_ms",
                     "retire_s"):  # fmt: skip
            if any(part in r for r in mine):
                row[part] = median([r.get(part) for r in mine])
        rows.append(row)
    return rows


def judge(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our goals, each as a ratio to start-first measured in the same repetition."""
    ours = [r for r in runs if r["mechanism"] == "runtime-api"]
    theirs = {r["rep"]: r for r in runs if r["mechanism"] == "start-first"}
    if not ours:
        return []
    failed = sum(r["failed"] for r in ours)
    total = sum(r["requests"] for r in ours)
    goals = [
        {
            "goal": GOALS["failed"],
            "measured": f"{failed} failed of {total:,} ({len(ours)} runs); start-first: "
            f"{sum(r['failed'] for r in theirs.values())} failed of "
            f"{sum(r['requests'] for r in theirs.values()):,}",
            "met": failed == 0,
        }
    ]
    pairs = [(r, theirs[r["rep"]]) for r in ours if r["rep"] in theirs]
    if pairs:
        ratios: list[float | None] = []
        for mine, other in pairs:
            a, b = mine["effective_ms"], other["effective_ms"]
            ratios.append(None if a is None or not b else round(a / b, 5))
        met = all(x is not None and x <= 0.1 for x in ratios)
        shown = ", ".join("-" if x is None else f"{x:.4f}" for x in ratios)
        goals.append(
            {
                "goal": GOALS["effective_ms"],
                "measured": "ours/start-first per rep: "
                + shown
                + " ("
                + ", ".join(f"{m['effective_ms']} vs {o['effective_ms']} ms" for m, o in pairs)
                + ")",
                "met": met,
                "ratios": ratios,
            }
        )
    return goals


def explain(runs: list[dict[str, Any]], load_average: object) -> list[str]:
    notes = []
    theirs = [r for r in runs if r["mechanism"] == "start-first"]
    ours = [r for r in runs if r["mechanism"] == "runtime-api"]
    if ours:
        notes.append(
            "runtime-api: web-green started beside web-blue before the load, until UP on every "
            f"HAProxy replica: {[r.get('prepare_s') for r in ours]} s (outside the timed "
            "command: blue-green pays for the new colour's start before the switch, while the "
            "old one serves); old colour retired (scaled to 0) under load in "
            f"{[r.get('retire_s') for r in ours]} s, failed from then on: "
            f"{[r.get('failed_from_retire') for r in ours]}"
        )
    failing = [r for r in theirs if r["failed"]]
    if failing:
        notes.append(
            "start-first failures (errors, seconds after the command; Swarm's v1 tasks "
            "stopped at): "
            + "; ".join(
                f"rep {r['rep']}: {r['errors']} at {r['failed_at_s']} "
                f"(v1 stopped {r.get('v1_tasks_stopped_s')})"
                for r in failing
            )
        )
    if any(r["command_outlasted_load"] for r in runs):
        notes.append("a command outlasted the load: its time to 100% new is unknown ('-')")
    lag = max((r["client"]["lag_p99_ms"] for r in runs), default=0.0)
    low = min((r["client"]["achieved_rate"] / r["client"]["target_rate"] for r in runs), default=1)
    notes.append(
        f"client health: achieved rate >= {low:.0%} of target in every run; p99 lag behind the "
        f"schedule at most {lag:.1f} ms; load average at the start {load_average}"
    )
    return notes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=150.0, help="req/s, all clients")
    parser.add_argument("--seconds", type=float, default=40.0, help="load per run")
    parser.add_argument("--switch-at", type=float, default=8.0, help="s into the load")
    parser.add_argument("--retire-after", type=float, default=2.0, help="s after our switch")
    parser.add_argument("--keep-alive-clients", type=int, default=8)
    parser.add_argument("--new-connection-clients", type=int, default=4)
    parser.add_argument("--path", default="/health")
    parser.add_argument("--mechanism", action="append", choices=MECHANISMS, dest="mechanisms")
    parser.add_argument("--port-base", type=int, default=48000, help="+443, +444, +999")
    parser.add_argument("--keep-stack", action="store_true", help="leave the stack running")
    parser.add_argument("--skip-build", action="store_true", help="images already pushed")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/swarm_switch.json")
    args = parser.parse_args(argv)
    if args.switch_at + args.retire_after + 5 > args.seconds:
        parser.error("--seconds too short: the change and the retirement must end under load")
    names = args.mechanisms or list(MECHANISMS)
    ports = {
        k: args.port_base + o for k, o in (("bluegreen", 443), ("rolling", 444), ("admin", 999))
    }
    started = time.monotonic()
    cluster = start_cluster(progress=log)
    work = Path(tempfile.mkdtemp(prefix=f"{STACK}-"))
    swarm = Swarm(cluster, ports, work)
    runs: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    mechanisms: list[Mechanism] = []
    disturbed: list[dict[str, Any]] = []
    try:
        if not args.skip_build:
            swarm.build_images()
        log(f"deploying stack {STACK}")
        swarm.deploy()
        info = {
            **host_info(("bench",)),
            "docker_nodes": cluster.docker(
                cluster.manager, "version", "--format", "{{.Server.Version}}"
            ),
            "haproxy": run(
                ["docker", "run", "--rm", "--entrypoint", "haproxy", LB_IMAGE, "-v"]
            ).splitlines()[0],
            "nodes": [n.name for n in cluster.nodes],
            "target": f"{cluster.manager.ip} (the manager's HAProxy replica)",
        }
        mechanisms = [
            cls(swarm, args.retire_after)
            for cls in (RuntimeAPISwitch, StartFirstUpdate)
            if cls.name in names
        ]
        for rep in range(1, args.reps + 1):
            for mechanism in mechanisms:
                plan = LoadPlan(
                    port=mechanism.port,
                    ca_file=ca_path(swarm.pem),
                    rate=args.rate,
                    seconds=args.seconds,
                    keep_alive_clients=args.keep_alive_clients,
                    new_connection_clients=args.new_connection_clients,
                    paths=(args.path,),
                    host=cluster.manager.ip,
                )
                row = undisturbed_run(cluster, mechanism, plan, args.switch_at, work, disturbed)
                row["rep"] = rep
                runs.append(row)
                log(
                    f"rep {rep} {mechanism.name}: {row['requests']} requests, {row['failed']} "
                    f"failed, to new {row['effective_ms']} ms, p99 {row['p99_before_ms']} -> "
                    f"{row['p99_first_s_ms']} ms (change {row['p99_change_ms']}), command "
                    f"{row['command_ms']} ms, rate {row['client']['achieved_rate']}/s"
                )
    finally:
        if not args.keep_stack:
            log(f"removing stack {STACK}")
            swarm.remove()
        swarm.client.close()
        shutil.rmtree(work, ignore_errors=True)
    medians = summarise(runs, names)
    goals = judge(runs)
    notes = explain(runs, info.get("load_average"))
    if disturbed:
        notes.append(
            f"{len(disturbed)} run(s) disturbed (a node restarted or not ready: another user of "
            "the cluster) were run again; they are under 'disturbed_runs', not in the medians"
        )
    command = (
        f"BASE_IMAGE={os.environ.get('BASE_IMAGE', base_image())} .venv/bin/python "
        f"bench/swarm_switch.py --reps {args.reps} --rate {args.rate:g} --seconds {args.seconds:g}"
    )
    doc = {
        "benchmark": "swarm_switch",
        "command": command,
        "machine": info,
        "params": {
            "reps": args.reps,
            "rate": args.rate,
            "seconds": args.seconds,
            "switch_at_s": args.switch_at,
            "retire_after_s": args.retire_after,
            "p99_before_from_s": WARMUP_S,
            "keep_alive_clients": args.keep_alive_clients,
            "new_connection_clients": args.new_connection_clients,
            "path": args.path,
            "replicas_per_service": REPLICAS,
            "stack": STACK,
            "ports": ports,
        },
        "mechanisms": {m.name: m.description for m in mechanisms},
        "columns": dict(COLUMNS),
        "medians": medians,
        "goals": goals,
        "notes": notes,
        "runs": runs,
        "disturbed_runs": disturbed,
        "run_s": round(time.monotonic() - started, 1),
    }
    print(render_table(medians, COLUMNS, "mechanism"))
    print(f"\nmedians of {args.reps} runs each, {args.rate:g} req/s for {args.seconds:g} s")
    publish(args.out, doc, goals, notes)
    print(f"\nwritten to {args.out}; run took {doc['run_s']} s; reproduce with:\n  {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
