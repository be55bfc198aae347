"""Where a deploy's wall time goes, beside the design document's fixed waits.

Runs real deploys of the reference stack (Compose project ``bgbenchdeploy``, loopback ports
47xxx, its own state and secrets): a first deploy, then ``--deploys`` blue-green switches, each
``pytest --bg-deploy`` in its own process as a user runs it. Each deploy's wall time is split,
from its record and event log, into:

- app start-up: the new colour's containers from ``up`` to healthy in Docker and UP in HAProxy;
- migrations: the release's migrations on the real database;
- suites: the migration rehearsal, the gates and the post-deploy suite;
- configured waits: the load windows before and after the switch, and the bake;
- backup and image build: work a user asked for, timed apart;
- framework overhead: everything else (pytest start-up and collection, prerequisites, colours,
  the load generator's start, the switch itself, drain and stop of the old colour, records and
  reports): what the tool costs beyond the work.

The design document's ``deploy.sh`` waits a fixed 30 s + 5 s + 30 s = 65 s per deploy, before any
work. Medians over the switches; a table on the terminal and ``bench/results/deploy.json``.

    BASE_IMAGE=bluegreen-base:bookworm .venv/bin/python bench/deploy.py [--deploys 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
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


def deploy(user: StackUser, release: str) -> tuple[float, str]:
    """One ``pytest --bg-deploy`` as a user runs it; its wall time and output."""
    start = time.monotonic()
    result = user.run("-q", "--bg-deploy", "--bg-release", release, timeout_s=900)
    wall = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(
            f"deploy {release} failed (exit {result.returncode}):\n{result.stdout[-4000:]}"
        )
    return wall, result.stdout


def timed_deploys(user: StackUser, count: int) -> list[dict[str, Any]]:
    """A first deploy on the empty host, then ``count`` timed ones: a row each."""
    config = user.config
    print("first deploy (empty host) ...", flush=True)
    deploy(user, "bench-initial")
    store = RecordStore(config.state_dir)
    rows: list[dict[str, Any]] = []
    for number in range(1, count + 1):
        release = f"bench-{number}"
        wall, _ = deploy(user, release)
        record = store.last()
        if record is None or record.release != release:
            raise SystemExit(f"no record of deploy {release} in {config.state_dir}")
        row = {"release": release, "deploy_id": record.id, **split(record, wall, config)}
        rows.append(row)
        print(f"{release}: {wall:.1f} s, overhead {row['framework_overhead_s']:.2f} s", flush=True)
    return rows


def events_of(config: StackConfig, deploy_id: str) -> dict[str, dict[str, Any]]:
    """The deploy's events by name (the last of each)."""
    found: dict[str, dict[str, Any]] = {}
    for line in config.log_file.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("deploy_id") == deploy_id:
            found[event["event"]] = event
    return found


def split(record: DeployRecord, wall_s: float, config: StackConfig) -> dict[str, float]:
    """One deploy's wall time, by where it went (see the module's docstring)."""
    stage = {s.name: s.duration_s for s in record.stages}
    healthy = events_of(config, record.id).get("bring_up.healthy", {})
    app_start = float(healthy.get("start_to_healthy_s", 0.0))
    migrations = float(healthy.get("migrate_s", 0.0))
    suites = stage.get("migration", 0.0) + stage.get("gates", 0.0) + stage.get("verify", 0.0)
    waits = 2 * config.load_window_s + config.bake_s
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
    args = parser.parse_args(argv)
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
        "goal_framework_overhead_s": 5.0,
        "framework_overhead_met": medians["framework_overhead_s"] < 5.0,
        "run_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows, medians))
    print(f"written to {args.out}; run took {result['run_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
