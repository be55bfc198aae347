"""Switching colours under load: the project's runtime-API switch against HAProxy reloads.

Under the same bounded, fixed-rate load (keep-alive and new-connection clients together, HTTPS on
loopback, :mod:`bench.loadgen`), on the same blue and green containers of one reference stack
(Compose project ``bgbench``), each mechanism moves traffic from blue to green:

- ``runtime-api``: the project's own switch on the stack's loadbalancer (``haproxy -db``):
  ``HAProxyRouter.preflight`` read just before the command (live colour, green UP), then the
  command ``HAProxyRouter.switch`` (``set map`` read back in one round trip, map file rewritten
  after) and ``HAProxyRouter.drain``; then, under the same load, the old colour is retired
  (its containers stopped) as a deploy's retire stage does, and requests are counted across
  that too.
- ``master-worker``: an extra loadbalancer, ``haproxy -W -db -S master.sock``; the map file is
  rewritten to green and the master CLI's ``reload`` re-reads it (the config file itself stays
  the same: the colour lives in the map file HAProxy reads at start).
- ``sf``: an extra loadbalancer run as ``haproxy -D -p pidfile``; the map file is rewritten and a
  new process started with ``-sf <old pids>`` (``docker exec``, through the Engine API).
- ``touch-hup``: an extra loadbalancer, plain ``haproxy -db`` like the reference one; the map file
  is rewritten, the config ``touch``-ed and HAProxy sent ``SIGHUP``, as the design document's
  ``deploy.sh`` does. Expected: nothing reloads.
- ``none``: the stack's loadbalancer, no switch at all: the noise floor of every figure.

The extra loadbalancers run the stack's own loadbalancer image, configuration and certificate,
with their own state folder (map file, sockets) and loopback port, on the colour networks.

Per run: failed requests; time from the command to the start of the last request the old colour
answered (the time until 100% of new requests reach the new colour; "-" when they never did);
old-colour answers after the command; keep-alive connections the server closed after it; p99 in
the second after the command minus p99 before it (from 1 s into the load); the switch's own run
time (ours: preflight to drained; the reloads: command to the new process serving, and to the old
one gone). Medians over ``--reps`` repetitions; a table on the terminal and
``bench/results/switch.json``.

Goals are ratios within one run, at each request rate (``--rate`` may be given several times:
the rates run one after another on the same stack, a table line per rate and mechanism, and a
scale table of how each figure grows with the rate, and whether the client kept up).

    BASE_IMAGE=bluegreen-base:bookworm .venv/bin/python bench/switch.py [--reps 3]
        [--rate N ...] [--seconds S] [--mechanism M ...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import docker  # noqa: E402

from bench.common import (  # noqa: E402
    BenchStack,
    add_stack_options,
    bench_stack,
    client_figures,
    log,
    machine_info,
    median,
    moved_after,
    publish,
    render_table,
    self_signed_ca,
    wait_until,
)
from bench.loadgen import LoadPlan, LoadResult, RunningLoad  # noqa: E402
from pytest_bluegreen.adapters.engines.compose import HAPROXY_CONFIG_IN_CONTAINER as CFG  # noqa: E402
from pytest_bluegreen.adapters.routers.haproxy import (  # noqa: E402
    MAP_KEY,
    HAProxyRouter,
    RuntimeAPI,
    write_map_file,
)
from pytest_bluegreen.core import load_figures as load  # noqa: E402
from pytest_bluegreen.core.colours import COLOURS, Colour  # noqa: E402
from pytest_bluegreen.core.config import LB_STATE_IN_CONTAINER  # noqa: E402
from pytest_bluegreen.core.errors import BluegreenError  # noqa: E402
from pytest_bluegreen.core.ports import Preflight  # noqa: E402

OLD: Final[Colour] = "blue"
NEW: Final[Colour] = "green"
MECHANISMS: Final = ("none", "runtime-api", "master-worker", "sf", "touch-hup")
DEFAULT_PATHS: Final = ("/health",)
WARMUP_S: Final = 1.0  # left out of "p99 before"
COLUMNS: Final = (
    ("requests", "requests"),
    ("failed", "failed"),
    ("effective_ms", "to 100% new (ms)"),
    ("to_set_map_ms", "to set map done (ms)"),
    ("old_after", "old answers after"),
    ("keepalive_closed", "keep-alive closed"),
    ("p99_before_ms", "p99 before"),
    ("p99_first_s_ms", "p99 1st s after"),
    ("p99_overhead_ms", "p99 overhead"),
    ("run_ms", "switch run (ms)"),
    ("old_gone_ms", "old process gone (ms)"),
)
GOALS: Final = {
    "failed": "0 failed requests through our switch and the old colour's retirement",
    "to_new_vs_trip": "every new request on the new colour within 3 runtime-API round trips",
    "set_map_vs_trip": "the command answered within 3 runtime-API round trips (an upper bound)",
    "to_new_vs_reload": "to 100% new at least 10x sooner than a master-worker reload",
    "run_vs_reload": "the whole switch (preflight to drained) within half a reload's time to new",
    "keepalive_closed": "no keep-alive connection closed by the switch",
}
SCALE_COLUMNS: Final = (
    ("achieved", "achieved req/s"),
    ("client_kept_up", "client kept up"),
    ("trip_ms", "round trip (ms)"),
    ("ours_to_new_ms", "ours to set map (ms)"),
    ("ours_seen_ms", "ours seen new (ms)"),
    ("ours_run_ms", "ours whole (ms)"),
    ("reload_to_new_ms", "reload to new (ms)"),
    ("ours_in_trips", "ours / trip"),
    ("reload_over_ours", "reload / ours"),
    ("ours_growth", "ours x base"),
    ("reload_growth", "reload x base"),
)
TRIP_GAP_S: Final = 0.05  # between the timed round trips of the "none" runs
KEPT_UP: Final = 0.9  # achieved at least this share of the target rate in every run


def ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def router_of(bench: BenchStack) -> HAProxyRouter:
    """The Compose stack's single HAProxy (this bench runs on one host)."""
    router = bench.stack.router
    assert isinstance(router, HAProxyRouter)
    return router


def revive_old(bench: BenchStack) -> None:
    """Start the old colour again if a retirement stopped it (the project's ``revive``)."""
    stack, services = bench.stack, list(bench.config.services.services_of(OLD))
    if stack.running_services(services) != services:
        stack.revive(OLD)  # started, healthy in Docker, UP in HAProxy, serving on its preview


class Mechanism:
    """A way to move traffic from blue to green on one loadbalancer."""

    name = ""
    description = ""

    def __init__(
        self, bench: BenchStack, port: int, router: HAProxyRouter, container: str = ""
    ) -> None:
        self.bench = bench
        self.port = port
        self.router = router
        self.container = container  # the loadbalancer's container (for its CPU throttling)

    def reset(self) -> None:
        """Blue live and every server UP again, outside the load."""
        if self.router.active_colour() != OLD:
            self.router.switch(OLD)
        for colour in COLOURS:
            self.router.wait_ready(colour, timeout_s=60)

    def prepare(self) -> None:
        """What is read before the command (ours: the preflight); nothing for a reload."""

    def switch(self) -> dict[str, Any]:
        """Move new requests to green; timings in ms (``run_ms`` at least)."""
        raise NotImplementedError

    def settle(self, command_at: float, load_end: float) -> dict[str, Any]:
        """What follows the switch under the same load (old process exit, retirement)."""
        return {}


class NoSwitch(Mechanism):
    name = "none"
    description = "no switch at all (the stack's loadbalancer): the noise floor"

    def switch(self) -> dict[str, Any]:
        """No switch; one runtime-API round trip (``show map``) timed instead, 10 times.

        Each on its own, 50 ms apart, as a switch makes it: back to back, HAProxy and this
        process stay hot and a trip costs a tenth of that.
        """
        api, where = self.router.api, self.router.map_in_container
        kinds = {  # each of our switch's two trips, set to the colour it already has
            "api_round_trip_ms": [f"show map {where}"],
            "preflight_trip_ms": [f"show map {where}", "show stat -1 4 -1"],
            "set_map_trip_ms": [f"set map {where} {MAP_KEY} {OLD}", f"show map {where}"],
        }
        trips: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(10):
            for kind, commands in kinds.items():
                time.sleep(TRIP_GAP_S)
                start = time.perf_counter()
                api.execute_all(commands)
                trips[kind].append(ms_since(start))
        return {"run_ms": None, **{kind: sorted(times) for kind, times in trips.items()}}


class RuntimeAPISwitch(Mechanism):
    name = "runtime-api"
    description = (
        "the project's HAProxyRouter on the stack's loadbalancer (haproxy -db): preflight read "
        "before the command; the command: set map read back, map file rewritten; drained; then "
        "the old colour's containers stopped under the same load"
    )

    def __init__(
        self,
        bench: BenchStack,
        port: int,
        router: HAProxyRouter,
        container: str,
        retire_after_s: float,
    ) -> None:
        super().__init__(bench, port, router, container)
        self.retire_after_s = retire_after_s
        self._started = 0.0
        self._preflight: Preflight | None = None

    def prepare(self) -> None:
        """The state read before the command, as a deploy reads it: live colour, green UP."""
        self._started = time.perf_counter()
        self._preflight = self.router.preflight(NEW)

    def switch(self) -> dict[str, Any]:
        result = self.router.switch(NEW, preflight=self._preflight)
        drain_s = self.router.drain(OLD, self.bench.config.retire.drain_timeout_s).waited_s
        run_ms = ms_since(self._started)  # the whole switch: from the preflight to drained
        return {
            "run_ms": run_ms,
            # An upper bound of the time to new: HAProxy applies set map before it answers.
            "to_set_map_ms": round(result.switch_ms, 3),
            "preflight_then_set_map_ms": round(result.preflight_ms + result.switch_ms, 3),
            "preflight_ms": round(result.preflight_ms, 3),
            "set_map_ms": round(result.switch_ms, 3),
            "persist_ms": round(result.persist_ms, 3),
            "verify_ms": round(result.verify_ms, 3),
            "drain_ms": round(drain_s * 1000, 3),
        }

    def settle(self, command_at: float, load_end: float) -> dict[str, Any]:
        """Retire the old colour as a deploy does (drained above, then stopped), under load."""
        time.sleep(max(0.0, command_at + self.retire_after_s - time.time()))
        started = time.time()
        self.bench.stack.compose.stop(list(self.bench.config.services.services_of(OLD)))
        stopped = time.time()
        return {
            "retire_started_at": started,
            "retire_s": round(stopped - started, 3),
            "retired_before_load_end": stopped < load_end,
        }


class ExtraLoadbalancer:
    """A loadbalancer container beside the stack's: same image, config and certificate.

    Its state folder (map file, admin socket, master socket, pidfile) is its own, mounted where
    the config expects it; it joins the stack's colour networks before it starts, so it
    resolves the same backend containers.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        bench: BenchStack,
        key: str,
        port: int,
        command: Sequence[str],
        init: bool,
    ) -> None:
        self.client = client
        self.bench = bench
        self.name = f"{bench.config.project_name}-lb-{key}"
        self.port = port
        self.dir = bench.home / "lb" / key
        self.command = list(command)
        self.init = init
        self.config_file = self.dir / "haproxy.cfg"
        self.router = HAProxyRouter(
            api=RuntimeAPI(self.dir / "admin.sock"),
            map_file=self.dir / "active.map",
            map_in_container=f"{LB_STATE_IN_CONTAINER}/active.map",
            backends_of=bench.config.router.backends_of,
        )

    def state_path(self, name: str) -> str:
        return f"{LB_STATE_IN_CONTAINER}/{name}"

    def create(self, image: str, networks: Sequence[str]) -> None:
        cfg = self.bench.config
        self.dir.mkdir(parents=True, exist_ok=True)
        reference = cfg.project_dir / "haproxy" / "haproxy.cfg"
        self.config_file.write_text(reference.read_text(encoding="utf-8"), encoding="utf-8")
        write_map_file(self.router.map_file, OLD)
        env_file = self.dir / "lb.env"
        env_file.write_text(
            f"STATS_PASSWORD={cfg.environment['STATS_PASSWORD']}\nPUBLIC_HTTPS_PORT={self.port}\n"
        )
        env_file.chmod(0o600)
        remove_container(self.name)
        argv = ["docker", "create", "--name", self.name, "--env-file", str(env_file)]
        argv += ["--label", f"bluegreen.bench={cfg.project_name}"]
        argv += ["--cpus", "1", "--memory", "256m", "--read-only"]
        argv += ["--tmpfs", "/tmp", "--tmpfs", "/run", *(["--init"] if self.init else [])]
        argv += ["-p", f"127.0.0.1:{self.port}:443", "--network", networks[0]]
        argv += ["-v", f"{self.config_file}:{CFG}:ro"]
        argv += ["-v", f"{cfg.tls_dir}:/etc/haproxy/tls:ro"]
        argv += ["-v", f"{self.dir}:{LB_STATE_IN_CONTAINER}", image, *self.command]
        docker_cli(argv)
        for network in networks[1:]:
            docker_cli(["docker", "network", "connect", network, self.name])
        docker_cli(["docker", "start", self.name])

    def exec(self, command: Sequence[str]) -> tuple[int, str]:
        """Run ``command`` in the container through the Engine API (no CLI start-up cost)."""
        api = self.client.api
        exec_id = api.exec_create(self.name, list(command))["Id"]
        output = api.exec_start(exec_id)
        code = api.exec_inspect(exec_id)["ExitCode"]
        return int(code or 0), output.decode("utf-8", "replace")

    def host_pids(self) -> dict[int, int]:
        """The container's processes: PID inside the container -> PID on this host."""
        found: dict[int, int] = {}
        top = self.client.api.top(self.name)
        column = top["Titles"].index("PID")
        for process in top["Processes"]:
            host_pid = int(process[column])
            with contextlib.suppress(OSError, ValueError, IndexError):
                for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
                    if line.startswith("NSpid:"):
                        found[int(line.split()[-1])] = host_pid
        return found

    def _answers(self) -> bool:
        try:
            self.router.api.execute("show info")
        except BluegreenError:
            return False
        return True

    def wait_serving(self, timeout_s: float = 60) -> None:
        """Its runtime API answers and it sees every server of both colours UP (bounded)."""
        if wait_until(self._answers, timeout_s, interval_s=0.1) is None:
            logs = docker_cli(["docker", "logs", "--tail", "20", self.name])
            raise RuntimeError(f"{self.name}: no runtime API after {timeout_s:.0f}s; {logs}")
        for colour in COLOURS:
            self.router.wait_ready(colour, timeout_s)


def process_gone(host_pid: int) -> bool:
    """True once the process has exited (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{host_pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def throttled_ms(client: docker.DockerClient, container: str) -> float | None:
    """CPU time the container's CFS quota (``cpus: 1.0``) held it back so far, when readable."""
    with contextlib.suppress(Exception):
        full = str(client.api.inspect_container(container)["Id"])
        v1 = Path(f"/sys/fs/cgroup/cpu/docker/{full}/cpu.stat")
        v2 = Path(f"/sys/fs/cgroup/system.slice/docker-{full}.scope/cpu.stat")
        for path, key, scale in ((v1, "throttled_time", 1e6), (v2, "throttled_usec", 1e3)):
            if path.is_file():
                for line in path.read_text().splitlines():
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value) / scale
    return None


def docker_cli(argv: Sequence[str], timeout: float = 120) -> str:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)}: {result.stderr.strip()}")
    return result.stdout


def remove_container(name: str) -> None:
    subprocess.run(
        ["docker", "rm", "-f", "-v", name],
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


class MasterWorkerReload(Mechanism):
    name = "master-worker"
    description = (
        "extra loadbalancer, haproxy -W -db -S master.sock: map file rewritten to green, then "
        "'reload' on the master CLI (same config file; HAProxy reads the map file at start); "
        "run time: command to the new worker listed by 'show proc'; old gone: the old worker "
        "no longer listed"
    )

    def __init__(self, bench: BenchStack, lb: ExtraLoadbalancer) -> None:
        super().__init__(bench, lb.port, lb.router, lb.name)
        self.lb = lb
        self.master = RuntimeAPI(lb.dir / "master.sock", timeout_s=5)
        self.old: set[int] = set()
        self.started = 0.0

    def workers(self) -> tuple[set[int], set[int]]:
        """Current and old worker PIDs from the master CLI's ``show proc``."""
        current: set[int] = set()
        old: set[int] = set()
        section = ""
        # ";quit": the master CLI keeps a connection open after a command otherwise.
        for line in self.master.execute("show proc;quit").splitlines():
            if line.startswith("#"):
                section = line.strip("# ").split()[0] if line.strip("# ") else section
                continue
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit() and parts[1] == "worker":
                (current if section == "workers" else old).add(int(parts[0]))
        return current, old

    def _new_worker_up(self) -> bool:
        try:
            current, _ = self.workers()
        except BluegreenError:
            return False
        return bool(current) and not current & self.old

    def _old_gone(self) -> bool:
        try:
            current, old = self.workers()
        except BluegreenError:
            return False
        return not (self.old & (current | old))

    def _reload(self) -> float | None:
        self.old = self.workers()[0]
        with contextlib.suppress(BluegreenError):  # the master closes the CLI as it re-executes
            self.master.execute("reload")
        return wait_until(self._new_worker_up, timeout_s=30)

    def reset(self) -> None:
        if self.router.active_colour() != OLD:
            write_map_file(self.router.map_file, OLD)
            self._reload()
            wait_until(self._old_gone, timeout_s=30, interval_s=0.1)
        self.lb.wait_serving()

    def switch(self) -> dict[str, Any]:
        self.started = time.perf_counter()
        write_map_file(self.router.map_file, NEW)
        up = self._reload()
        return {"run_ms": None if up is None else ms_since(self.started)}

    def settle(self, command_at: float, load_end: float) -> dict[str, Any]:
        gone = wait_until(self._old_gone, timeout_s=max(1.0, load_end - time.time() + 10))
        return {"old_gone_ms": None if gone is None else ms_since(self.started)}


class SoftStopRestart(Mechanism):
    name = "sf"
    description = (
        "extra loadbalancer, haproxy -D -p pidfile: map file rewritten to green, then a new "
        "'haproxy -D -p pidfile -f cfg -sf <old pids>' through docker exec (Engine API); run "
        "time: command to the new process daemonized (config read, ports bound), including the "
        "docker exec (exec_overhead_ms: a no-op exec); old gone: the old process exited"
    )

    PIDFILE: Final = "haproxy.pid"

    def __init__(self, bench: BenchStack, lb: ExtraLoadbalancer) -> None:
        super().__init__(bench, lb.port, lb.router, lb.name)
        self.lb = lb
        self.old_host_pids: list[int] = []
        self.started = 0.0
        self.exec_overhead_ms: float | None = None  # a no-op docker exec, timed before the load

    def argv(self, old: Sequence[int]) -> list[str]:
        argv = ["haproxy", "-D", "-p", self.lb.state_path(self.PIDFILE)]
        argv += ["-f", CFG]
        return argv + (["-sf", *(str(p) for p in old)] if old else [])

    def pids(self) -> list[int]:
        path = self.lb.dir / self.PIDFILE
        if not path.is_file():
            return []
        return [int(x) for x in path.read_text().split() if x.isdigit()]

    def start(self) -> None:
        code, output = self.lb.exec(self.argv([]))
        if code != 0:
            raise RuntimeError(f"haproxy -D did not start in {self.lb.name}: {output}")

    def _restart(self) -> None:
        old = self.pids()
        mapping = self.lb.host_pids()
        self.old_host_pids = [mapping[p] for p in old if p in mapping]
        code, output = self.lb.exec(self.argv(old))
        if code != 0:
            raise RuntimeError(f"haproxy -sf failed in {self.lb.name}: {output}")

    def _old_gone(self) -> bool:
        return all(process_gone(p) for p in self.old_host_pids)

    def reset(self) -> None:
        if self.router.active_colour() != OLD:
            write_map_file(self.router.map_file, OLD)
            self._restart()
            wait_until(self._old_gone, timeout_s=30, interval_s=0.1)
        self.lb.wait_serving()
        start = time.perf_counter()
        self.lb.exec(["true"])
        self.exec_overhead_ms = ms_since(start)

    def switch(self) -> dict[str, Any]:
        self.started = time.perf_counter()
        write_map_file(self.router.map_file, NEW)
        self._restart()
        return {"run_ms": ms_since(self.started), "exec_overhead_ms": self.exec_overhead_ms}

    def settle(self, command_at: float, load_end: float) -> dict[str, Any]:
        if not self.old_host_pids:
            return {"old_gone_ms": None}
        gone = wait_until(self._old_gone, timeout_s=max(1.0, load_end - time.time() + 10))
        return {"old_gone_ms": None if gone is None else ms_since(self.started)}


class TouchHup(Mechanism):
    name = "touch-hup"
    description = (
        "extra loadbalancer, plain haproxy -db as the stack's: map file rewritten to green, "
        "config touched, SIGHUP to HAProxy (the design document's deploy.sh); run time: the "
        "command itself"
    )

    def __init__(self, bench: BenchStack, lb: ExtraLoadbalancer) -> None:
        super().__init__(bench, lb.port, lb.router, lb.name)
        self.lb = lb

    def reset(self) -> None:
        write_map_file(self.router.map_file, OLD)
        if self.router.active_colour() != OLD:  # a HUP that reloaded after all: start afresh
            docker_cli(["docker", "restart", self.lb.name])
        self.lb.wait_serving()

    def switch(self) -> dict[str, Any]:
        start = time.perf_counter()
        write_map_file(self.router.map_file, NEW)
        os.utime(self.lb.config_file)
        pid = int(self.lb.client.api.inspect_container(self.lb.name)["State"]["Pid"])
        os.kill(pid, signal.SIGHUP)
        return {"run_ms": ms_since(start)}

    def settle(self, command_at: float, load_end: float) -> dict[str, Any]:
        time.sleep(max(0.0, load_end - time.time() - 0.5))
        return {"colour_in_haproxy_at_end": self.router.active_colour()}


def analyse(
    mechanism: Mechanism,
    result: LoadResult,
    command_at: float,
    timings: dict[str, Any],
    plan: LoadPlan,
    load_start: float,
) -> dict[str, Any]:
    """One run's figures; the p99 split reuses the project's own :func:`load.figures`."""
    samples = result.samples
    # p99 before the command leaves out the first second: the keep-alive clients' TLS handshakes
    # and cold workers would otherwise raise "before" and make every overhead look smaller.
    warm = [s for s in samples if s.t >= load_start + WARMUP_S]
    figures = load.figures(warm, command_at, OLD)
    row: dict[str, Any] = {
        "mechanism": mechanism.name,
        "requests": len(samples),
        "failed": sum(not s.ok for s in samples),
        "failed_after_command": sum(1 for s in samples if s.t >= command_at and not s.ok),
        "effective_ms": moved_after(samples, command_at, OLD, NEW),
        "old_after": figures.old_colour_after_switch,
        "keepalive_closed": sum(1 for c in result.closures if c.t >= command_at),
        "keepalive_closed_before": sum(1 for c in result.closures if c.t < command_at),
        "closed_how": sorted({c.how for c in result.closures if c.t >= command_at}),
        "p99_before_ms": figures.before.p99_ms,
        "p99_first_s_ms": figures.first_second.p99_ms,
        "p99_overhead_ms": figures.p99_overhead_ms,
        "p50_before_ms": figures.before.p50_ms,
        "p50_first_s_ms": figures.first_second.p50_ms,
        "command_at_s": round(command_at - (samples[0].t if samples else command_at), 3),
        **{k: v for k, v in timings.items() if k != "retire_started_at"},
        "client": client_figures(result, plan.seconds, plan.rate),
        "errors": sorted({s.error for s in samples if s.error})[:5],
    }
    retire_at = timings.get("retire_started_at")
    if retire_at is not None:
        row["failed_from_retire"] = sum(1 for s in samples if s.t >= retire_at and not s.ok)
        retire = load.figures(warm, retire_at, OLD)
        row["p99_overhead_retire_ms"] = retire.p99_overhead_ms
    return row


def run_once(
    mechanism: Mechanism,
    plan: LoadPlan,
    switch_at_s: float,
    workdir: Path,
    client: docker.DockerClient,
) -> dict[str, Any]:
    """One mechanism under one bounded load: reset, load, switch at ``switch_at_s``, settle."""
    revive_old(mechanism.bench)
    mechanism.reset()
    throttled_before = throttled_ms(client, mechanism.container)
    running = RunningLoad(plan, workdir)
    try:
        command_at = running.start_at + switch_at_s
        time.sleep(max(0.0, command_at - time.time()))
        mechanism.prepare()
        command_at = time.time()
        timings = mechanism.switch()
        timings.update(mechanism.settle(command_at, running.end_at))
        result = running.wait()
    finally:
        running.kill()
    throttled_after = throttled_ms(client, mechanism.container)
    if throttled_before is not None and throttled_after is not None:
        timings["lb_cpu_throttled_ms"] = round(throttled_after - throttled_before, 1)
    return analyse(mechanism, result, command_at, timings, plan, running.start_at)


def summarise(
    runs: list[dict[str, Any]], names: Sequence[str], rates: Sequence[float]
) -> list[dict[str, Any]]:
    """Medians per rate and mechanism, a row each."""
    rows = []
    for rate in rates:
        for name in names:
            mine = [r for r in runs if r["mechanism"] == name and r["rate"] == rate]
            if not mine:
                continue
            row: dict[str, Any] = {"run": f"{rate:g}/s {name}", "mechanism": name, "rate": rate}
            row["reps"] = len(mine)
            for key, _ in COLUMNS:
                row[key] = median([r.get(key) for r in mine])
            row["requests_total"] = sum(r["requests"] for r in mine)
            row["failed_total"] = sum(r["failed"] for r in mine)
            row["keepalive_closed_total"] = sum(r["keepalive_closed"] for r in mine)
            row["never_moved"] = sum(1 for r in mine if r["effective_ms"] is None)
            row["achieved_rate"] = median([r["client"]["achieved_rate"] for r in mine])
            for part in ("preflight_ms", "set_map_ms", "persist_ms", "verify_ms", "drain_ms"):
                if any(part in r for r in mine):
                    row[part] = median([r.get(part) for r in mine])
            if any("retire_s" in r for r in mine):
                row["retire_s"] = median([r.get("retire_s") for r in mine])
                row["failed_from_retire_total"] = sum(r.get("failed_from_retire", 0) for r in mine)
            for kind in ("api_round_trip_ms", "preflight_trip_ms", "set_map_trip_ms"):
                trips = [t for r in mine for t in r.get(kind, [])]
                if trips:
                    row[kind] = round(statistics.median(trips), 3)
            rows.append(row)
    return rows


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(numerator / denominator, 2)


def scale(
    runs: list[dict[str, Any]], medians: list[dict[str, Any]], rates: Sequence[float]
) -> list[dict[str, Any]]:
    """A line per rate: our figures and the reload's, in round trips and against the first rate."""

    def of(rate: float, name: str) -> dict[str, Any]:
        return next((m for m in medians if m["rate"] == rate and m["mechanism"] == name), {})

    lines: list[dict[str, Any]] = []
    for rate in rates:
        ours, reload, none = of(rate, "runtime-api"), of(rate, "master-worker"), of(rate, "none")
        at_rate = [r for r in runs if r["rate"] == rate]
        kept_up = all(r["client"]["achieved_rate"] >= KEPT_UP * rate for r in at_rate)
        lines.append(
            {
                "rate": rate,
                "achieved": median([r["client"]["achieved_rate"] for r in at_rate]),
                "client_kept_up": "yes" if kept_up else "no: the machine is the limit",
                "trip_ms": none.get("api_round_trip_ms"),
                "ours_to_new_ms": ours.get("to_set_map_ms"),
                "ours_seen_ms": ours.get("effective_ms"),
                "ours_run_ms": ours.get("run_ms"),
                "reload_to_new_ms": reload.get("effective_ms"),
                "ours_in_trips": ratio(ours.get("to_set_map_ms"), none.get("api_round_trip_ms")),
                "reload_over_ours": ratio(reload.get("effective_ms"), ours.get("to_set_map_ms")),
            }
        )
    base = lines[0] if lines else {}
    for line in lines:
        line["ours_growth"] = ratio(line["ours_to_new_ms"], base.get("ours_to_new_ms"))
        line["reload_growth"] = ratio(line["reload_to_new_ms"], base.get("reload_to_new_ms"))
    return lines


def judge(
    runs: list[dict[str, Any]], medians: list[dict[str, Any]], rates: Sequence[float]
) -> list[dict[str, Any]]:
    """The issue's goals for our switch at each rate, each a ratio within the same run."""
    goals = []
    for rate in rates:
        ours = [r for r in runs if r["mechanism"] == "runtime-api" and r["rate"] == rate]
        if not ours:
            continue
        line = next(s for s in scale(runs, medians, [rate]))
        summary = next(m for m in medians if m["mechanism"] == "runtime-api" and m["rate"] == rate)
        at = f"at {rate:g} req/s"
        total = sum(r["requests"] for r in ours)
        failed = sum(r["failed"] for r in ours)
        goals.append(
            {
                "goal": f"{GOALS['failed']} ({at})",
                "measured": f"{failed} failed of {total:,} ({len(ours)} runs)",
                "met": failed == 0 and total > 0,
            }
        )
        # As the clients saw it (the start of the last request the old colour answered), and
        # from the command to set map answered: an upper bound of when traffic moved, exact at
        # any rate where the clients' figure is only as fine as the gaps between requests.
        trip = line["trip_ms"]
        for key, what, seen in (
            ("to_new_vs_trip", "as the clients saw it", summary["effective_ms"]),
            ("set_map_vs_trip", "from the command to set map answered", summary["to_set_map_ms"]),
        ):
            if trip is not None and seen is not None:
                goals.append(
                    {
                        "goal": f"{GOALS[key]} ({at})",
                        "measured": f"median {seen} ms {what} = {ratio(seen, trip)} x the median "
                        f"single round trip of {trip} ms ('show map', same load, same run)",
                        "met": seen <= 3 * trip,
                    }
                )
        to_new = summary["to_set_map_ms"]
        reload_to_new = line["reload_to_new_ms"]
        if reload_to_new is not None and to_new is not None:
            goals.append(
                {
                    "goal": f"{GOALS['to_new_vs_reload']} ({at})",
                    "measured": f"ours {to_new} ms to set map answered, reload {reload_to_new} "
                    f"ms to 100% new as clients saw it: {line['reload_over_ours']}x",
                    "met": to_new * 10 <= reload_to_new,
                }
            )
            goals.append(
                {
                    "goal": f"{GOALS['run_vs_reload']} ({at})",
                    "measured": f"ours {summary['run_ms']} ms whole, reload {reload_to_new} ms "
                    f"to new: {ratio(summary['run_ms'], reload_to_new)}x",
                    "met": summary["run_ms"] * 2 <= reload_to_new,
                }
            )
        closed = sum(r["keepalive_closed"] for r in ours)
        goals.append(
            {
                "goal": f"{GOALS['keepalive_closed']} ({at})",
                "measured": f"{closed} closed",
                "met": closed == 0,
            }
        )
    return goals


def explain(
    runs: list[dict[str, Any]], goals: list[dict[str, Any]], info_load: object = None
) -> list[str]:
    """Notes for the JSON: where our switch's time went, the noise floor, and client health."""
    notes = []
    base = [r["p99_overhead_ms"] for r in runs if r["mechanism"] == "none"]
    ours = [r["p99_overhead_ms"] for r in runs if r["mechanism"] == "runtime-api"]
    if base:
        notes.append(
            "noise floor: with no switch at all, 'p99 in the second after minus p99 before' "
            f"ranged {min(base):.1f} to {max(base):.1f} ms (runs: {base}); ours: {ours}"
        )
    mine = [r for r in runs if r["mechanism"] == "runtime-api"]
    parts = ("preflight_ms", "set_map_ms", "verify_ms", "persist_ms", "drain_ms")
    notes.append(
        "our switch per run (rate, preflight, set map, verify, persist, drain) ms: "
        f"{[[r['rate'], *(r.get(p) for p in parts)] for r in mine]}; the preflight (show map + "
        "show stat, one round trip) is read just before the command, the command is one round "
        "trip (set map + show map); the drain waits for the requests still in flight on the old "
        "colour, polling every 5 ms (HAProxy 2.6 pushes no event for a server's last session)"
    )
    throttled = {
        r["mechanism"]: r["lb_cpu_throttled_ms"] for r in runs if "lb_cpu_throttled_ms" in r
    }
    if throttled:
        notes.append(
            "the loadbalancer's CPU quota (cpus: 1.0) throttled it during the runs for "
            f"(ms, last run of each): {throttled}"
        )
    failed = [r for r in mine if r["failed"]]
    if failed:
        notes.append(f"failed requests: {[(r['rate'], r['errors']) for r in failed]}")
    lag = max((r["client"]["lag_p99_ms"] for r in runs), default=0.0)
    cpu = max((max(r["client"]["cpu_share"].values(), default=0.0) for r in runs), default=0.0)
    low = min((r["client"]["achieved_rate"] / r["client"]["target_rate"] for r in runs), default=1)
    notes.append(
        f"client health: achieved rate >= {low:.0%} of target in every run; p99 lag behind "
        f"the schedule at most {lag:.1f} ms; busiest load process used {cpu:.0%} of one core; "
        f"load average at the start {info_load}"
    )
    return notes


EXTRA_LBS: Final = {  # mechanism: (key, port offset, command, docker --init)
    "master-worker": (
        "mw",
        543,
        ["haproxy", "-W", "-db", "-S", f"{LB_STATE_IN_CONTAINER}/master.sock", "-f", CFG],
        False,
    ),
    "sf": ("sf", 643, ["sleep", "infinity"], True),
    "touch-hup": ("hup", 743, ["haproxy", "-db", "-f", CFG], False),
}


def build_mechanisms(
    client: docker.DockerClient,
    bench: BenchStack,
    names: Sequence[str],
    args: argparse.Namespace,
    extra: list[ExtraLoadbalancer],
) -> list[Mechanism]:
    """The mechanisms asked for; extra loadbalancers (appended to ``extra``) started."""
    cfg = bench.config
    router = router_of(bench)
    lb_id = bench.stack.container_ids(cfg.services.loadbalancer, running_only=True)[0]
    attrs = client.api.inspect_container(lb_id)
    image = attrs["Config"]["Image"]
    networks = sorted(attrs["NetworkSettings"]["Networks"])
    public = cfg.port("PUBLIC_HTTPS_PORT")
    mechanisms: list[Mechanism] = []
    for name in names:
        if name == "none":
            mechanisms.append(NoSwitch(bench, public, router, lb_id))
            continue
        if name == "runtime-api":
            mechanisms.append(RuntimeAPISwitch(bench, public, router, lb_id, args.retire_after))
            continue
        key, offset, command, init = EXTRA_LBS[name]
        lb = ExtraLoadbalancer(client, bench, key, args.port_base + offset, command, init)
        extra.append(lb)
        lb.create(image, networks)
        if name == "master-worker":
            mechanisms.append(MasterWorkerReload(bench, lb))
        elif name == "sf":
            sf = SoftStopRestart(bench, lb)
            sf.start()
            mechanisms.append(sf)
        else:
            mechanisms.append(TouchHup(bench, lb))
    for lb in extra:
        lb.wait_serving()
    return mechanisms


def run_rep(
    mechanism: Mechanism,
    args: argparse.Namespace,
    rate: float,
    switch_at: float,
    rep: int,
    client: docker.DockerClient,
) -> dict[str, Any]:
    """One repetition of one mechanism at ``rate``, with the load the command line asked for."""
    plan = LoadPlan(
        port=mechanism.port,
        ca_file=self_signed_ca(mechanism.bench.config),
        rate=rate,
        seconds=args.seconds,
        keep_alive_clients=args.keep_alive_clients,
        new_connection_clients=args.new_connection_clients,
        paths=tuple(args.paths or DEFAULT_PATHS),
    )
    row = run_once(mechanism, plan, switch_at, mechanism.bench.home / "load", client)
    row["rep"] = rep
    row["rate"] = rate
    log(
        f"{rate:g}/s rep {rep} {mechanism.name}: {row['requests']} requests, "
        f"{row['failed']} failed, "
        f"to new {row['effective_ms']} ms, ka closed {row['keepalive_closed']}, "
        f"p99 +{row['p99_overhead_ms']} ms, run {row['run_ms']} ms, "
        f"rate {row['client']['achieved_rate']}/s"
    )
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--rate", type=float, action="append", dest="rates", help="req/s, all clients (300)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="load per run")
    parser.add_argument("--switch-at", type=float, default=None, help="s into the load")
    parser.add_argument("--retire-after", type=float, default=2.0, help="s after our switch")
    parser.add_argument("--keep-alive-clients", type=int, default=8)
    parser.add_argument("--new-connection-clients", type=int, default=4)
    parser.add_argument("--path", action="append", dest="paths", help="default: both healths")
    parser.add_argument("--mechanism", action="append", choices=MECHANISMS, dest="mechanisms")
    add_stack_options(parser)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "switch.json")
    args = parser.parse_args(argv)
    rates = args.rates or [300.0]
    names = args.mechanisms or list(MECHANISMS)
    switch_at = args.switch_at if args.switch_at is not None else round(0.4 * args.seconds, 3)
    if switch_at + args.retire_after + 5 > args.seconds and "runtime-api" in names:
        parser.error("--seconds too short: the old colour's retirement must end under load")
    started = time.monotonic()
    client = docker.from_env(timeout=120)
    extra: list[ExtraLoadbalancer] = []
    runs: list[dict[str, Any]] = []
    mechanisms: list[Mechanism] = []
    info: dict[str, Any] = {}
    try:
        with bench_stack(args.project, args.port_base, args.work_dir, args.keep_stack) as bench:
            try:
                mechanisms = build_mechanisms(client, bench, names, args, extra)
                info = machine_info(bench.stack)
                for rate in rates:
                    for rep in range(1, args.reps + 1):
                        for mechanism in mechanisms:
                            runs.append(run_rep(mechanism, args, rate, switch_at, rep, client))
                if args.keep_stack:  # leave it as it came: blue live, both colours running
                    revive_old(bench)
                    NoSwitch(bench, 0, router_of(bench)).reset()
            finally:  # before the stack goes: they hold endpoints on its networks
                for lb in extra:
                    remove_container(lb.name)
    finally:
        client.close()
    medians = summarise(runs, names, rates)
    goals = judge(runs, medians, rates)
    scaled = scale(runs, medians, rates)
    notes = explain(runs, goals, info.get("load_average"))
    command = (
        f"BASE_IMAGE={os.environ.get('BASE_IMAGE', 'debian:bookworm-slim')} .venv/bin/python "
        f"bench/switch.py --reps {args.reps} {' '.join(f'--rate {r:g}' for r in rates)} "
        f"--seconds {args.seconds:g}"
        + "".join(f" --mechanism {n}" for n in names if args.mechanisms)
    )
    doc = {
        "benchmark": "switch",
        "command": command,
        "machine": info,
        "params": {
            "reps": args.reps,
            "rates": rates,
            "seconds": args.seconds,
            "switch_at_s": switch_at,
            "retire_after_s": args.retire_after,
            "p99_before_from_s": WARMUP_S,
            "keep_alive_clients": args.keep_alive_clients,
            "new_connection_clients": args.new_connection_clients,
            "paths": list(args.paths or DEFAULT_PATHS),
            "project": args.project,
        },
        "mechanisms": {m.name: m.description for m in mechanisms},
        "columns": dict(COLUMNS),
        "medians": medians,
        "scale": scaled,
        "goals": goals,
        "notes": notes,
        "runs": runs,
        "run_s": round(time.monotonic() - started, 1),
    }
    print(render_table(medians, COLUMNS, "run"))
    print(f"\nmedians of {args.reps} runs per mechanism and rate, {args.seconds:g} s of load each")
    if len(rates) > 1:
        print("\n" + render_table(scaled, SCALE_COLUMNS, "rate"))
        print("x base: the figure against the same figure at the first rate")
    publish(args.out, doc, goals, notes)
    print(f"\nwritten to {args.out}; run took {doc['run_s']} s; reproduce with:\n  {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
