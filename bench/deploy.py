"""Where a deploy's wall time goes, beside the design document's fixed waits.

Runs real deploys of the reference stack (Compose project ``bgbenchdeploy``, loopback ports
47xxx, its own state and secrets): a first deploy, then ``--deploys`` blue-green switches, each
``pytest --bg-deploy`` in its own process as a user runs it. Each deploy's wall time is split,
from its record and event log, into:

- app start-up: the new colour's containers from ``up`` to healthy in Docker and UP in HAProxy;
- migrations: the release's migrations on the real database;
- suites: the migration rehearsal, the gates and the post-deploy suite;
- configured waits: the load windows before and after the switch as the deploy waited them (its
  ``switch`` event says how long), and the bake (at most ``bake_s``);
- backup and image build: work a user asked for, timed apart;
- framework overhead: everything else (pytest start-up and collection, prerequisites, colours,
  the load generator's release, the switch itself, drain and stop of the old colour, records and
  reports): what the tool costs beyond the work. Each deploy's row also says where it went
  (``overhead``: before the first stage, in each stage beyond its work, between the stages, from
  the last stage to the end of the deploy, and from there to pytest's exit).

Goal (issue 15): a framework overhead under 3 s (median). ``--baseline-json`` (this bench's JSON
of an earlier commit, run on the same machine just before) adds the ratio to it.

The design document's ``deploy.sh`` waits a fixed 30 s + 5 s + 30 s = 65 s per deploy, before any
work. Medians over the switches; a table on the terminal and ``bench/results/deploy.json``.

    BASE_IMAGE=bluegreen-base:bookworm .venv/bin/python bench/deploy.py [--deploys 3] \
        [--baseline-json OLD.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import bench_settings, machine_info  # noqa: E402
from pytest_bluegreen.core.config import StackConfig  # noqa: E402
from pytest_bluegreen.core.record import DeployRecord, RecordStore  # noqa: E402
from tests.harness import NOISY_P99, StackUser, short_home, throwaway_stack  # noqa: E402

PROJECT: Final = "bgbenchdeploy"
PORT_BASE: Final = 47000
DESIGN_FIXED_WAITS_S: Final = 30 + 5 + 30  # the design document's deploy.sh sleeps
GOAL_OVERHEAD_S: Final = 3.0  # issue 15: a deploy's own overhead, median
COLUMNS: Final = (
    "wall_s",
    "app_start_s",
    "migrations_s",
    "suites_s",
    "configured_waits_s",
    "backup_s",
    "build_s",
    "framework_overhead_s",
)


def deploy(user: StackUser, release: str) -> tuple[float, float, float]:
    """One ``pytest --bg-deploy`` as a user runs it; its wall time, start and end (epoch)."""
    started_at = time.time()
    start = time.monotonic()
    result = user.run("-q", "--bg-deploy", "--bg-release", release, timeout_s=900)
    wall = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(
            f"deploy {release} failed (exit {result.returncode}):\n{result.stdout[-4000:]}"
        )
    return wall, started_at, started_at + wall


def timed_deploys(user: StackUser, count: int) -> list[dict[str, Any]]:
    """A first deploy on the empty host, then ``count`` timed ones: a row each."""
    config = user.config
    print("first deploy (empty host) ...", flush=True)
    deploy(user, "bench-initial")
    store = RecordStore(config.state_dir)
    rows: list[dict[str, Any]] = []
    for number in range(1, count + 1):
        release = f"bench-{number}"
        wall, started_at, ended_at = deploy(user, release)
        record = store.last()
        if record is None or record.release != release:
            raise SystemExit(f"no record of deploy {release} in {config.state_dir}")
        row = {"release": release, "deploy_id": record.id, **split(record, wall, config)}
        row["overhead"] = overhead_split(record, row, config, started_at, ended_at)
        rows.append(row)
        print(f"{release}: {wall:.1f} s, overhead {row['framework_overhead_s']:.2f} s", flush=True)
    return rows


def events_of(config: StackConfig, deploy_id: str) -> dict[str, dict[str, Any]]:
    """The deploy's events by name (the last of each)."""
    return {event["event"]: event for event in event_list(config, deploy_id)}


def event_list(config: StackConfig, deploy_id: str) -> list[dict[str, Any]]:
    """The deploy's events in order."""
    lines = config.log_file.read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e.get("deploy_id") == deploy_id]


def epoch(event: dict[str, Any]) -> float:
    """An event's time (the log's ISO timestamps, UTC) in epoch seconds."""
    return datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()


def configured_waits(record: DeployRecord, config: StackConfig) -> float:
    """The load windows as the deploy waited them, and the bake (at most what it lasted)."""
    stage = {s.name: s.duration_s for s in record.stages}
    switch = events_of(config, record.id).get("switch", {})
    windows = float(switch.get("load_window_before_s", 0.0))
    windows += float(switch.get("load_window_after_s", 0.0))
    if "load_window_before_s" not in switch and config.load.users:  # a deploy of before them
        windows = 2 * config.load.window_s
    return windows + min(config.gates.bake_s, stage.get("bake", 0.0))


def split(record: DeployRecord, wall_s: float, config: StackConfig) -> dict[str, float]:
    """One deploy's wall time, by where it went (see the module's docstring)."""
    stage = {s.name: s.duration_s for s in record.stages}
    healthy = events_of(config, record.id).get("bring_up.healthy", {})
    app_start = float(healthy.get("start_to_healthy_s", 0.0))
    migrations = float(healthy.get("migrate_s", 0.0))
    suites = stage.get("migration", 0.0) + stage.get("gates", 0.0) + stage.get("verify", 0.0)
    waits = configured_waits(record, config)
    row = {
        "wall_s": wall_s,
        "app_start_s": app_start,
        "migrations_s": migrations,
        "suites_s": suites,
        "configured_waits_s": waits,
        "backup_s": stage.get("backup", 0.0),
        "build_s": stage.get("build", 0.0),
    }
    accounted = sum(v for k, v in row.items() if k != "wall_s")
    row["framework_overhead_s"] = wall_s - accounted
    row["stages"] = stage  # type: ignore[assignment]
    return row


def overhead_split(
    record: DeployRecord,
    row: dict[str, Any],
    config: StackConfig,
    started_at: float,
    ended_at: float,
) -> dict[str, Any]:
    """Where one deploy's framework overhead went, from its events' times (seconds)."""
    events = event_list(config, record.id)
    first, last = epoch(events[0]), epoch(events[-1])  # deploy.start (its stage), deploy.end
    stage_ends = [epoch(e) for e in events if e["event"] == "stage"]
    stage = {s.name: s.duration_s for s in record.stages}
    work = {  # what each stage's row counts elsewhere
        "bring_up": row["app_start_s"] + row["migrations_s"],
        "switch": configured_waits(record, config)
        - min(config.gates.bake_s, stage.get("bake", 0.0)),
        "bake": min(config.gates.bake_s, stage.get("bake", 0.0)),
    }
    in_stages = {
        name: round(duration - work.get(name, 0.0), 3)
        for name, duration in stage.items()
        if name in ("prerequisites", "colours", "bring_up", "switch", "bake", "retire")
    }
    split = {
        "before_first_stage_s": round(first - started_at, 3),  # pytest start-up, collection
        "in_stages_s": in_stages,
        "between_stages_s": round(max(stage_ends) - first - sum(stage.values()), 3),
        "conclusion_s": round(last - max(stage_ends), 3),  # load stop, placement, record
        "after_deploy_end_s": round(ended_at - last, 3),  # metrics, prune, notify, reports, exit
    }
    return split


def table(rows: list[dict[str, Any]], medians: dict[str, float]) -> str:
    header = f"{'deploy':12}" + "".join(f"{c.removesuffix('_s'):>20}" for c in COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['release']:12}" + "".join(f"{row[c]:20.2f}" for c in COLUMNS))
    lines.append(f"{'median':12}" + "".join(f"{medians[c]:20.2f}" for c in COLUMNS))
    lines.append(
        f"{'design':12}{'fixed waits alone: ' + str(DESIGN_FIXED_WAITS_S) + ' s per deploy':>40}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=3, help="blue-green switches to time")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "deploy.json")
    parser.add_argument("--keep", action="store_true", help="leave the stack and its folder")
    parser.add_argument(
        "--baseline-json",
        type=Path,
        help="this bench's JSON of an earlier commit, on this machine: the ratio to its overhead",
    )
    args = parser.parse_args(argv)
    baseline = json.loads(args.baseline_json.read_text()) if args.baseline_json else None
    started = time.monotonic()
    with short_home("bgbenchdeploy-", keep=args.keep) as home:
        # This bench times the deploy; it does not judge its p99 (noise on 2 shared cores).
        settings = bench_settings(PROJECT, home, PORT_BASE, NOISY_P99)
        try:
            with throwaway_stack(settings, keep=args.keep, progress=lambda _: None) as stack:
                rows = timed_deploys(StackUser(settings, stack), args.deploys)
                info = machine_info(stack)
        finally:
            if args.keep:
                print(f"kept: the stack (project {PROJECT}) and {home}")
    medians = {c: round(statistics.median(r[c] for r in rows), 3) for c in COLUMNS}
    result = {
        "benchmark": "deploy",
        "machine": info,
        "deploys": rows,
        "medians": medians,
        "design_fixed_waits_s": DESIGN_FIXED_WAITS_S,
        "goal_framework_overhead_s": GOAL_OVERHEAD_S,
        "framework_overhead_met": medians["framework_overhead_s"] < GOAL_OVERHEAD_S,
        "run_s": round(time.monotonic() - started, 1),
    }
    if baseline is not None:
        before = float(baseline["medians"]["framework_overhead_s"])
        result["baseline"] = {
            "file": str(args.baseline_json),
            "commit": baseline["machine"].get("commit"),
            "date": baseline["machine"].get("date"),
            "framework_overhead_s": before,
            "wall_s": baseline["medians"]["wall_s"],
        }
        result["framework_overhead_ratio_to_baseline"] = round(
            medians["framework_overhead_s"] / before, 3
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows, medians))
    print(overhead_table(rows))
    print(goal_lines(result))
    print(f"written to {args.out}; run took {result['run_s']} s")
    return 0


def overhead_table(rows: list[dict[str, Any]]) -> str:
    """Where the overhead went, one line per deploy."""
    lines = ["framework overhead by where it went (s):"]
    for row in rows:
        split = row["overhead"]
        stages = " ".join(f"{k} {v:.2f}" for k, v in split["in_stages_s"].items())
        lines.append(
            f"  {row['release']}: before the first stage {split['before_first_stage_s']:.2f}; "
            f"in stages: {stages}; between stages {split['between_stages_s']:.2f}; "
            f"conclusion {split['conclusion_s']:.2f}; after deploy.end "
            f"{split['after_deploy_end_s']:.2f}"
        )
    return "\n".join(lines)


def goal_lines(result: dict[str, Any]) -> str:
    """The goal, met or missed, and the ratio to the baseline when there is one."""
    overhead = result["medians"]["framework_overhead_s"]
    met = "met" if result["framework_overhead_met"] else "missed"
    lines = [f"framework overhead < {GOAL_OVERHEAD_S:g} s: {met} (median {overhead:.2f} s)"]
    if "baseline" in result:
        base = result["baseline"]
        lines.append(
            f"against the baseline ({base['commit']}, {base['date']}): "
            f"{base['framework_overhead_s']:.2f} s -> {overhead:.2f} s, ratio "
            f"{result['framework_overhead_ratio_to_baseline']:.2f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
