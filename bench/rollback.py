"""Rolling back under load: from a failed verdict to traffic, and a verified colour, on the old one.

On one reference stack (Compose project ``bgbench``) under a bounded, fixed-rate load
(keep-alive and new-connection clients together, HTTPS on loopback, :mod:`bench.loadgen`), each
repetition switches from blue to green with the project's router, then declares the release
failed (the verdict, at time T) and calls the project's own rollback,
``pytest_bluegreen.commands.rollback`` (the path of ``pytest --bg-rollback``: deploy lock, the
old colour revived if needed, ``set map`` back, then every critical path checked on the public
URL to come from the old colour). Measured from T:

- back on old: the start of the last request not answered by the old colour (a failed request
  counts as not answered), i.e. from when on 100% of new requests are on the old colour
  (the project's own ``load.figures(..., rollback_at=T).back_on_old_ms``);
- verified: the rollback returned, the old colour's health and smoke checks passed.

Three variants, interleaved in each repetition and reported apart: ``hot`` (the old colour
still running, as during a deploy's bake), ``retired`` (the old colour drained and stopped
under load first, as after a deploy's retire stage, so the rollback first starts its
containers again: the revive cost) and ``retired-before``, the same with the revive as it was
before issue 15 (:func:`revive_before`: Compose start, Docker healthy, HAProxy UP, preview) on
HAProxy's checks' timing of then (HAProxy restarted between the variants), the reference of
the retired goal. Goals are ratios of this run's own figures: the hot rollback against bare
runtime-API round trips timed in each hot run, the retired one against the reference. Medians
over ``--reps``; a table on the terminal and ``bench/results/rollback.json``; ``--watch``
records Docker's and HAProxy's view of the old colour every 20 ms during each rollback.

    BASE_IMAGE=bluegreen-base:bookworm .venv/bin/python bench/rollback.py [--reps 3]
        [--rate N] [--variant hot|retired|retired-before ...] [--watch]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final
from unittest import mock

REPO: Final = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    BenchStack,
    add_stack_options,
    bench_settings,
    client_figures,
    log,
    machine_info,
    median,
    publish,
    render_table,
    self_signed_ca,
)
from bench.loadgen import LoadPlan, RunningLoad  # noqa: E402
from pytest_bluegreen import commands  # noqa: E402
from pytest_bluegreen.adapters.engines.compose import ComposeStack  # noqa: E402
from pytest_bluegreen.adapters.routers.haproxy import HAProxyRouter  # noqa: E402
from pytest_bluegreen.checks.probe import check_colour_serves  # noqa: E402
from pytest_bluegreen.core import load_figures as load  # noqa: E402
from pytest_bluegreen.core.colours import Colour  # noqa: E402
from pytest_bluegreen.core.errors import BluegreenError, StackError  # noqa: E402
from pytest_bluegreen.core.record import DeployRecord, RecordStore  # noqa: E402
from pytest_bluegreen.core.rollback import RollbackResult, switch_back  # noqa: E402
from pytest_bluegreen.core.state import ColourState, load_state, save_state  # noqa: E402
from tests import harness  # noqa: E402

OLD: Final[Colour] = "blue"
NEW: Final[Colour] = "green"
# "retired-before": the same retired rollback, revived the way it was before issue 15
# (revive_before): the reference each "retired" run is compared with, in the same run.
VARIANTS: Final = ("hot", "hot-in-deploy", "retired", "retired-before")
HOT: Final = ("hot", "hot-in-deploy")
RETIRED: Final = ("retired", "retired-before")
ROUND_TRIPS: Final = 10  # bare runtime-API round trips timed before each hot verdict
TRIP_GAP_S: Final = 0.05  # between them, as in bench/switch.py
DEFAULT_PATHS: Final = ("/health",)
COLUMNS: Final = (
    ("requests", "requests"),
    ("failed", "failed"),
    ("back_on_old_ms", "T to 100% on old (ms)"),
    ("switched_ms", "T to set map done (ms)"),
    ("verified_ms", "T to verified (ms)"),
    ("record_rollback_ms", "record: rollback (ms)"),
    ("record_verified_ms", "record: verified (ms)"),
    ("retire_s", "old stopped in (s)"),
)
GOAL: Final = "traffic back on the old colour within 1 s of a failed verdict"
HOT_GOAL: Final = (
    "hot rollback, verdict to every new request on the old colour <= 3 round trips of the same run"
)
RETIRED_GOAL: Final = "retired rollback <= 0.5x the reference of the same run"
RETIRED_RATIO: Final = 0.5
HOT_TRIPS: Final = 3.0


HAPROXY_CONFIG: Final = REPO / "haproxy" / "haproxy.cfg"
HAPROXY_CONFIG_IN_CONTAINER: Final = "/usr/local/etc/haproxy/haproxy.cfg"
# The checks' timing of HAProxy's servers, and what it was before issue 15 (the reference's).
CHECK_TIMING: Final = re.compile(r"(default-server) inter .*? (resolvers )")
CHECK_TIMING_BEFORE: Final = r"\1 inter 1s fall 2 rise 2 \2"
OVERRIDE: Final = """services:
  {service}:
    volumes:
      - {path}:{target}:ro
"""


def haproxy_config(variant: str) -> str:
    """HAProxy's configuration for a run: the repository's; for the reference, as it was.

    The reference reproduces the revive before issue 15 on the checks' timing before it:
    every check 1 s apart, UP after two good ones (``inter 1s fall 2 rise 2``).
    """
    text = HAPROXY_CONFIG.read_text(encoding="utf-8")
    if variant != "retired-before":
        return text
    before, found = CHECK_TIMING.subn(CHECK_TIMING_BEFORE, text)
    if found != 1:
        raise SystemExit(f"{HAPROXY_CONFIG}: no 'default-server inter ...' line to set")
    return before


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def rollback_stack(
    project: str, port_base: int, work_dir: Path | None, keep: bool
) -> Iterator[tuple[BenchStack, Path]]:
    """:func:`bench.common.bench_stack`'s stack, HAProxy reading a configuration file of its own.

    Yields the stack and that file, which :func:`use_haproxy_config` changes between runs.
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    folder: contextlib.AbstractContextManager[Path] = (
        harness.short_home(f"{project}-", keep=keep)
        if work_dir is None
        else contextlib.nullcontext(work_dir)
    )
    try:
        with folder as home:
            home.mkdir(parents=True, exist_ok=True)
            config_file = home / "haproxy.cfg"
            config_file.write_text(haproxy_config("retired"), encoding="utf-8")
            override = home / "haproxy-config.yml"
            override.write_text(
                OVERRIDE.format(
                    service="loadbalancer", path=config_file, target=HAPROXY_CONFIG_IN_CONTAINER
                ),
                encoding="utf-8",
            )
            compose = [str(harness.BASE_COMPOSE), str(override)]
            settings = bench_settings(project, home, port_base, {"compose_files": compose})
            with harness.throwaway_stack(
                settings, fresh=work_dir is None, keep=keep, progress=lambda m: log(f"stack: {m}")
            ) as stack:
                log(f"stack {project} up in {harness.bring_up(stack):.1f}s")
                yield BenchStack(settings, stack, keep), config_file
    finally:
        signal.signal(signal.SIGTERM, previous)


def use_haproxy_config(bench: BenchStack, config_file: Path, variant: str) -> bool:
    """Give HAProxy the configuration of ``variant``'s runs: restarted when it changes.

    Written in place (the file is bind-mounted), then the loadbalancer restarted and its
    runtime API waited for; True when it was restarted.
    """
    text = haproxy_config(variant)
    if config_file.read_text(encoding="utf-8") == text:
        return False
    config_file.write_text(text, encoding="utf-8")
    stack = bench.stack
    for container_id in stack.container_ids(stack.config.services.loadbalancer):
        stack.engine.client.api.restart(container_id, timeout=5)
    deadline = time.monotonic() + 60
    while True:
        try:
            stack.router.active_colour()
            return True
        except BluegreenError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def revive_before(stack: ComposeStack, colour: Colour) -> None:
    """``ComposeStack.revive`` as it was before issue 15: the reference of ``retired-before`` runs.

    Compose starts the stopped services, then Docker reports every container healthy (its
    healthcheck's own interval), then HAProxy sees every server UP and the preview answers,
    each polled every 0.2 s as then.
    """
    cfg = stack.config
    services = list(cfg.services.release_services_of(colour))
    stopped = [s for s in services if not stack.running_services([s])]
    if not stopped and not stack.router.not_ready(colour):
        return
    if stopped:
        stack.progress(f"starting the retired {colour} colour ({', '.join(stopped)})")
        stack.compose.start(stopped)
    stack.wait_healthy(services, cfg.engine.healthy_timeout_s)
    deadline = time.monotonic() + 30
    while stack.router.not_ready(colour):
        if time.monotonic() >= deadline:
            raise StackError(f"{colour} is not UP in HAProxy after 30s")
        time.sleep(0.2)
    stack.progress(f"{colour} is UP in HAProxy")
    deadline = time.monotonic() + 30
    while check_colour_serves(
        cfg.preview_url(colour),
        cfg.gates.critical_paths,
        colour,
        cfg.ca_file,
        expected_status=cfg.gates.expected_status,
    ):
        if time.monotonic() >= deadline:
            raise StackError(f"{colour} does not serve after 30s")
        time.sleep(0.2)
    stack.progress(f"{colour} answers on its preview")


@contextlib.contextmanager
def revived_as(variant: str) -> Iterator[None]:
    """The project's own revive, or for ``retired-before`` the previous one in its place."""
    if variant != "retired-before":
        yield
        return
    with mock.patch.object(ComposeStack, "revive", revive_before):
        yield


class Watch:
    """What a revive waits on, polled side by side with it: every change, ms after the verdict.

    Docker's view of each container of the colour (status, health) and HAProxy's of each
    server; only with ``--watch`` (the polling itself costs the machine a little).
    """

    def __init__(self, bench: BenchStack, colour: Colour, since: float, every_s: float = 0.02):
        self.bench, self.colour, self.since, self.every_s = bench, colour, since, every_s
        self.changes: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        stack, cfg = self.bench.stack, self.bench.config
        seen: dict[str, str] = {}
        ids = {s: stack.container_ids(s) for s in cfg.services.release_services_of(self.colour)}
        while not self._stop.is_set():
            now: dict[str, str] = {}
            for service, found in ids.items():
                for i in found:
                    with contextlib.suppress(Exception):
                        state = stack.engine.state(i)
                        now[f"docker {service}"] = f"{state.status}/{state.health}"
                        now[f"docker {service} address"] = container_addresses(stack, i)
            with contextlib.suppress(BluegreenError):
                for server in stack.router.servers(self.colour):
                    now[f"haproxy {server.backend}/{server.server}"] = server.status
                now.update(server_addresses(stack, self.colour))
            for key, value in now.items():
                if seen.get(key) != value:
                    at = round((time.time() - self.since) * 1000, 1)
                    self.changes.append((at, f"{key} {value}"))
                    seen[key] = value
            self._stop.wait(self.every_s)


def container_addresses(stack: ComposeStack, container_id: str) -> str:
    """The container's addresses, network by network (a started container may get new ones)."""
    networks = stack.engine.client.api.inspect_container(container_id)["NetworkSettings"]
    return " ".join(sorted(n.get("IPAddress") or "-" for n in networks["Networks"].values()))


def server_addresses(stack: ComposeStack, colour: Colour) -> dict[str, str]:
    """The address HAProxy sends each server of ``colour`` to (it learns a new one by DNS)."""
    router = stack.router
    if not isinstance(router, HAProxyRouter):
        return {}
    backends = set(stack.config.router.backends_of(colour))
    found = {}
    for line in router.api.execute("show servers state").splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] in backends:
            found[f"haproxy {fields[1]}/{fields[3]} address"] = fields[4]
    return found


class SwitchedAt:
    """The rollback's observer: when its switch back returned, the map file written too.

    An upper bound beside the record's figure (to HAProxy's answer to set map), which is the
    goal's: both exact where the load's, a request every few milliseconds, cannot see below its
    own spacing.
    """

    def __init__(self) -> None:
        self.at: float | None = None

    def traffic_switched(self, from_colour: Colour, to_colour: Colour, reason: str) -> None:
        if self.at is None:
            self.at = time.time()


def round_trips(bench: BenchStack, count: int = ROUND_TRIPS) -> list[float]:
    """``count`` bare runtime-API round trips (``show map``), in ms, :data:`TRIP_GAP_S` apart.

    Each on its own, as bench/switch.py times them: back to back, HAProxy and this process
    stay hot and a trip costs a tenth of one a rollback makes.
    """
    router = bench.stack.router
    assert isinstance(router, HAProxyRouter)
    command = f"show map {router.map_in_container}"
    trips = []
    for _ in range(count):
        time.sleep(TRIP_GAP_S)
        started = time.perf_counter()
        router.api.execute(command)
        trips.append(round((time.perf_counter() - started) * 1000, 3))
    return trips


def prepare(bench: BenchStack) -> None:
    """Blue live, green running and UP; both colours recorded as having run a release."""
    stack, cfg = bench.stack, bench.config
    for colour in (OLD, NEW):
        if stack.running_services(cfg.services.services_of(colour)) != list(
            cfg.services.services_of(colour)
        ):
            stack.revive(colour)
        stack.router.wait_ready(colour, timeout_s=60)
    if stack.router.active_colour() != OLD:
        stack.router.switch(OLD)
    env = cfg.environment
    state = load_state(cfg.state_file)
    state = ColourState(
        live=OLD,
        releases={c: env.get(f"{c.upper()}_RELEASE", "initial") for c in (OLD, NEW)},
        last_deploy=state.last_deploy,
    )
    save_state(cfg.state_file, state)


def run_once(
    bench: BenchStack,
    variant: str,
    plan: LoadPlan,
    switch_at_s: float,
    verdict_after_s: float,
    workdir: Path,
    watch: bool = False,
    retired_for_s: float = 0.0,
) -> dict[str, Any]:
    """Switch to green under load, retire blue (the retired variants), then roll back at T.

    A retired colour stays stopped at least ``retired_for_s`` before T, as after a deploy's
    retire stage: HAProxy has its servers DOWN and their names no longer resolve.
    """
    stack, cfg = bench.stack, bench.config
    prepare(bench)
    running = RunningLoad(plan, workdir)
    row: dict[str, Any] = {"variant": variant}
    try:
        time.sleep(max(0.0, running.start_at + switch_at_s - time.time()))
        switched_at = time.time()
        stack.router.switch(NEW)
        releases = load_state(cfg.state_file).releases
        # Marked retired before the stop, as the project's retire does: a rollback starts it.
        retired = {OLD} if variant in RETIRED else set()
        save_state(cfg.state_file, ColourState(live=NEW, releases=releases, retired=retired))
        if variant in RETIRED:
            stack.router.drain(OLD, cfg.retire.drain_timeout_s)
            started = time.time()
            stack.compose.stop(list(cfg.services.services_of(OLD)))
            row["retire_s"] = round(time.time() - started, 3)
            time.sleep(retired_for_s)
        if variant in HOT:  # the same run's unit, under the same load, just before T
            time.sleep(max(0.0, switched_at + verdict_after_s - 1.0 - time.time()))
            row["round_trips_ms"] = round_trips(bench)
        time.sleep(max(0.0, switched_at + verdict_after_s - time.time()))
        verdict_at = time.time()
        steps: list[tuple[float, str]] = []

        def progress(message: str) -> None:
            steps.append((round((time.time() - verdict_at) * 1000, 1), message))
            log(f"rollback: {message}")

        switched = SwitchedAt()
        watcher = Watch(bench, OLD, verdict_at) if watch else contextlib.nullcontext()
        in_deploy: RollbackResult | None = None
        with revived_as(variant), watcher:
            if variant == "hot-in-deploy":
                in_deploy = rollback_in_deploy(bench, switched)
                message = f"switch_back: {in_deploy.problems or 'verified'}"
            else:
                message = commands.rollback(cfg, progress=progress, observer=switched)
        verified_at = time.time()
        if isinstance(watcher, Watch):
            row["watch_ms"] = watcher.changes
        row["steps_ms"] = steps  # the revive's own progress, ms after the verdict
        row["rollback_message"] = message
        if verified_at > running.end_at - 1:
            log(f"warning: the rollback ended {verified_at - running.end_at:+.1f}s from load end")
        result = running.wait()
    finally:
        running.kill()
    samples = result.samples
    figures = load.figures(samples, switched_at, OLD, rollback_at=verdict_at)
    record = RecordStore(cfg.state_dir).last()
    if in_deploy is not None:  # no record: a deploy writes its own after the rollback
        record = DeployRecord(id="in-deploy", release="", from_colour=NEW, to_colour=OLD)
        record.rollback_s = in_deploy.back_s
        record.rollback_verified_s = in_deploy.verified_s
    row.update(
        {
            "requests": len(samples),
            "failed": sum(not s.ok for s in samples),
            "failed_after_verdict": sum(1 for s in samples if s.t >= verdict_at and not s.ok),
            "back_on_old_ms": figures.back_on_old_ms,
            # The rollback's own figure (the record's, to the µs): from the command's start to
            # HAProxy's answer to set map; the observer is called after the map file is written.
            "switched_ms": None
            if record is None or record.rollback_s is None
            else round(record.rollback_s * 1000, 3),
            "observer_ms": None
            if switched.at is None
            else round((switched.at - verdict_at) * 1000, 3),
            "verified_ms": round((verified_at - verdict_at) * 1000, 3),
            "record_rollback_ms": None
            if record is None or record.rollback_s is None
            else round(record.rollback_s * 1000, 3),
            "record_verified_ms": None
            if record is None or record.rollback_verified_s is None
            else round(record.rollback_verified_s * 1000, 3),
            "new_answers_after_verdict": sum(
                1 for s in samples if s.t >= verdict_at and s.colour == NEW
            ),
            "keepalive_closed": sum(1 for c in result.closures if c.t >= switched_at),
            "verdict_at_s": round(verdict_at - samples[0].t, 3) if samples else None,
            "load_covered_rollback": verified_at < running.end_at,
            "client": client_figures(result, plan.seconds, plan.rate),
            "errors": sorted({s.error for s in samples if s.error})[:5],
        }
    )
    return row


def rollback_in_deploy(bench: BenchStack, observer: SwitchedAt) -> RollbackResult:
    """The rollback a deploy runs at its verdict, with its lock held and its state read.

    The traffic step of :class:`pytest_bluegreen.core.rollback.Rollback`,
    :func:`~pytest_bluegreen.core.rollback.switch_back`, as a deploy's rollback runs it: the
    adapters a deploy opened at its prerequisites, timed from T.
    """
    since = time.monotonic()
    host = commands.host_for(bench.config, lambda message: None)
    return switch_back(
        lambda colour: bench.stack.revive(colour), host.router, host.colour_serves, OLD, NEW,
        since, observer, retired=False,
    )  # fmt: skip


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        row: dict[str, Any] = {"variant": variant, "reps": len(mine)}
        for key, _ in COLUMNS:
            row[key] = median([r.get(key) for r in mine])
        row["requests_total"] = sum(r["requests"] for r in mine)
        row["failed_total"] = sum(r["failed"] for r in mine)
        row["back_on_old_worst_ms"] = max(r["back_on_old_ms"] or 0.0 for r in mine)
        trips = [t for r in mine for t in r.get("round_trips_ms", ())]
        row["round_trip_ms"] = round(statistics.median(trips), 3) if trips else None
        rows.append(row)
    return rows


def goal_lines(medians: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each goal met or missed, as ratios of figures of this same run."""
    by_variant = {m["variant"]: m for m in medians}
    goals = []
    for name in HOT:
        hot = by_variant.get(name)
        if not hot:
            continue
        where = "--bg-rollback" if name == "hot" else "a deploy's own rollback"
        goals.append(
            {
                "goal": f"{GOAL} ({where})",
                "measured": f"{name}: median {hot['back_on_old_ms']} ms, worst "
                f"{hot['back_on_old_worst_ms']} ms",
                "met": hot["back_on_old_worst_ms"] < 1000,
            }
        )
        back, trip = hot["switched_ms"], hot["round_trip_ms"]
        limit = None if trip is None else round(HOT_TRIPS * trip, 3)
        goals.append(
            {
                "goal": f"{HOT_GOAL} ({where})",
                "measured": f"{name}: verdict to set map done, median {back} ms (the load saw "
                f"every new request on the old colour after {hot['back_on_old_ms']} ms); "
                f"round trip median {trip} ms, limit {limit} ms"
                + ("" if back is None or not trip else f" ({back / trip:.1f} trips)"),
                "met": back is not None and limit is not None and back <= limit,
            }
        )
    new, before = by_variant.get("retired"), by_variant.get("retired-before")
    if new and before:
        back, reference = new["back_on_old_ms"], before["back_on_old_ms"]
        ratio = None if back is None or not reference else round(back / reference, 3)
        goals.append(
            {
                "goal": RETIRED_GOAL,
                "measured": f"retired: median {back} ms; retired-before (the reference): "
                f"median {reference} ms; ratio {ratio}",
                "met": ratio is not None and ratio <= RETIRED_RATIO,
            }
        )
    return goals


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=300.0, help="req/s, all clients")
    parser.add_argument("--variant", action="append", choices=VARIANTS, dest="variants")
    parser.add_argument("--switch-at", type=float, default=2.0, help="s into the load")
    parser.add_argument("--verdict-after", type=float, default=2.0, help="s after the switch")
    parser.add_argument("--hot-seconds", type=float, default=8.0, help="load per hot run")
    parser.add_argument("--retired-seconds", type=float, default=35.0, help="load per retired run")
    parser.add_argument(
        "--retired-for", type=float, default=8.0, help="s a retired colour is stopped before T"
    )
    parser.add_argument("--keep-alive-clients", type=int, default=8)
    parser.add_argument("--new-connection-clients", type=int, default=4)
    parser.add_argument("--path", action="append", dest="paths", help="default: both healths")
    parser.add_argument(
        "--watch", action="store_true", help="record Docker's and HAProxy's view every 20 ms"
    )
    add_stack_options(parser)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "rollback.json")
    args = parser.parse_args(argv)
    variants = args.variants or list(VARIANTS)
    started = time.monotonic()
    runs: list[dict[str, Any]] = []
    with rollback_stack(args.project, args.port_base, args.work_dir, args.keep_stack) as (
        bench,
        config_file,
    ):
        info = machine_info(bench.stack)
        for rep in range(1, args.reps + 1):
            for variant in variants:
                if use_haproxy_config(bench, config_file, variant):
                    log(f"HAProxy restarted with the checks' timing of the {variant} runs")
                plan = LoadPlan(
                    port=bench.config.port("PUBLIC_HTTPS_PORT"),
                    ca_file=self_signed_ca(bench.config),
                    rate=args.rate,
                    seconds=args.hot_seconds if variant == "hot" else args.retired_seconds,
                    keep_alive_clients=args.keep_alive_clients,
                    new_connection_clients=args.new_connection_clients,
                    paths=tuple(args.paths or DEFAULT_PATHS),
                )
                row = run_once(
                    bench,
                    variant,
                    plan,
                    args.switch_at,
                    args.verdict_after,
                    bench.home / "load",
                    watch=args.watch,
                    retired_for_s=args.retired_for,
                )
                row["rep"] = rep
                runs.append(row)
                log(
                    f"rep {rep} {variant}: {row['requests']} requests, {row['failed']} failed, "
                    f"back on old {row['back_on_old_ms']} ms, verified {row['verified_ms']} ms"
                )
        prepare(bench)
    medians = summarise(runs)
    goals = goal_lines(medians)
    notes = [
        "back on old and set map done count from the verdict: for --bg-rollback (hot) they "
        "include the command's set-up before its one round trip (the deploy lock, the state "
        "file); a deploy's own rollback (hot-in-deploy) holds both already; the record's "
        "rollback time counts from the command's start to HAProxy's answer to set map",
        "round trip: a bare runtime-API 'show map' (the live colour), timed 10 times 50 ms "
        "apart in each hot run under the same load, in the second before the verdict; the "
        "median of all of them",
    ]
    if any(m["variant"] in RETIRED for m in medians):
        notes.append(
            "retired: the old colour's stopped containers are started again first. 'retired' "
            "is the project's revive (every container started side by side through the Engine "
            "API, then HAProxy's own check sees each routed server UP and the preview answers "
            "every critical path; workers: Docker healthy); 'retired-before' is the revive "
            "before issue 15 (Compose start, Docker healthy after its healthcheck, checked "
            "every 2 s, then HAProxy UP, then the preview path by path, polled every 0.2 s), "
            "interleaved with it, on HAProxy's checks' timing of then (the repository's "
            "haproxy.cfg with 'inter 1s fall 2 rise 2', HAProxy restarted between the "
            "variants, outside the measured time). steps_ms has each run's "
            "progress, ms after the verdict: "
            f"{[(r['variant'], r['steps_ms']) for r in runs if r['variant'] in RETIRED]}"
        )
    lost = [r for r in runs if not r["load_covered_rollback"]]
    if lost:
        notes.append(
            f"{len(lost)} runs' verification ended after the load: raise --retired-seconds"
        )
    command = (
        f"BASE_IMAGE={os.environ.get('BASE_IMAGE', 'debian:bookworm-slim')} .venv/bin/python "
        f"bench/rollback.py --reps {args.reps} --rate {args.rate:g}"
    )
    doc = {
        "benchmark": "rollback",
        "command": command,
        "machine": info,
        "params": {
            "reps": args.reps,
            "rate": args.rate,
            "switch_at_s": args.switch_at,
            "verdict_after_s": args.verdict_after,
            "hot_seconds": args.hot_seconds,
            "retired_seconds": args.retired_seconds,
            "retired_for_s": args.retired_for,
            "keep_alive_clients": args.keep_alive_clients,
            "new_connection_clients": args.new_connection_clients,
            "paths": list(args.paths or DEFAULT_PATHS),
            "project": args.project,
        },
        "columns": dict(COLUMNS),
        "medians": medians,
        "goals": goals,
        "notes": notes,
        "runs": runs,
        "run_s": round(time.monotonic() - started, 1),
    }
    print(render_table(medians, COLUMNS, "variant"))
    print(f"\nmedians of {args.reps} runs per variant, {args.rate:g} req/s")
    publish(args.out, doc, goals, notes)
    print(f"\nwritten to {args.out}; run took {doc['run_s']} s; reproduce with:\n  {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
