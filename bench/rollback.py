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

Two variants, reported apart: ``hot`` (the old colour still running, as during a deploy's bake)
and ``retired`` (the old colour drained and stopped under load first, as after a deploy's retire
stage, so the rollback first starts its containers again: the revive cost). Medians over
``--reps``; a table on the terminal and ``bench/results/rollback.json``.

    BASE_IMAGE=bluegreen-base:bookworm .venv/bin/python bench/rollback.py [--reps 3]
        [--rate N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    BenchStack,
    add_stack_options,
    bench_stack,
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
from pytest_bluegreen.core import load  # noqa: E402
from pytest_bluegreen.core.colours import Colour  # noqa: E402
from pytest_bluegreen.core.record import RecordStore  # noqa: E402
from pytest_bluegreen.core.state import ColourState, load_state, save_state  # noqa: E402

OLD: Final[Colour] = "blue"
NEW: Final[Colour] = "green"
VARIANTS: Final = ("hot", "retired")
DEFAULT_PATHS: Final = ("/health",)
COLUMNS: Final = (
    ("requests", "requests"),
    ("failed", "failed"),
    ("back_on_old_ms", "T to 100% on old (ms)"),
    ("verified_ms", "T to verified (ms)"),
    ("record_rollback_ms", "record: rollback (ms)"),
    ("record_verified_ms", "record: verified (ms)"),
    ("retire_s", "old stopped in (s)"),
)
GOAL: Final = "traffic back on the old colour within 1 s of a failed verdict"


def prepare(bench: BenchStack) -> None:
    """Blue live, green running and UP; both colours recorded as having run a release."""
    stack, cfg = bench.stack, bench.config
    for colour in (OLD, NEW):
        if stack.running_services(cfg.services_of(colour)) != list(cfg.services_of(colour)):
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
) -> dict[str, Any]:
    """Switch to green under load, retire blue (variant ``retired``), then roll back at T."""
    stack, cfg = bench.stack, bench.config
    prepare(bench)
    running = RunningLoad(plan, workdir)
    row: dict[str, Any] = {"variant": variant}
    try:
        time.sleep(max(0.0, running.start_at + switch_at_s - time.time()))
        switched_at = time.time()
        stack.router.switch(NEW)
        save_state(
            cfg.state_file, ColourState(live=NEW, releases=load_state(cfg.state_file).releases)
        )
        if variant == "retired":
            stack.router.drain(OLD, cfg.drain_timeout_s)
            started = time.time()
            stack.compose.stop(list(cfg.services_of(OLD)))
            row["retire_s"] = round(time.time() - started, 3)
        time.sleep(max(0.0, switched_at + verdict_after_s - time.time()))
        verdict_at = time.time()
        steps: list[tuple[float, str]] = []

        def progress(message: str) -> None:
            steps.append((round((time.time() - verdict_at) * 1000, 1), message))
            log(f"rollback: {message}")

        message = commands.rollback(cfg, progress=progress)
        verified_at = time.time()
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
    row.update(
        {
            "requests": len(samples),
            "failed": sum(not s.ok for s in samples),
            "failed_after_verdict": sum(1 for s in samples if s.t >= verdict_at and not s.ok),
            "back_on_old_ms": figures.back_on_old_ms,
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
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=300.0, help="req/s, all clients")
    parser.add_argument("--variant", action="append", choices=VARIANTS, dest="variants")
    parser.add_argument("--switch-at", type=float, default=2.0, help="s into the load")
    parser.add_argument("--verdict-after", type=float, default=2.0, help="s after the switch")
    parser.add_argument("--hot-seconds", type=float, default=8.0, help="load per hot run")
    parser.add_argument("--retired-seconds", type=float, default=25.0, help="load per retired run")
    parser.add_argument("--keep-alive-clients", type=int, default=8)
    parser.add_argument("--new-connection-clients", type=int, default=4)
    parser.add_argument("--path", action="append", dest="paths", help="default: both healths")
    add_stack_options(parser)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "rollback.json")
    args = parser.parse_args(argv)
    variants = args.variants or list(VARIANTS)
    started = time.monotonic()
    runs: list[dict[str, Any]] = []
    with bench_stack(args.project, args.port_base, args.work_dir, args.keep_stack) as bench:
        info = machine_info(bench.stack)
        for rep in range(1, args.reps + 1):
            for variant in variants:
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
                    bench, variant, plan, args.switch_at, args.verdict_after, bench.home / "load"
                )
                row["rep"] = rep
                runs.append(row)
                log(
                    f"rep {rep} {variant}: {row['requests']} requests, {row['failed']} failed, "
                    f"back on old {row['back_on_old_ms']} ms, verified {row['verified_ms']} ms"
                )
        prepare(bench)
    medians = summarise(runs)
    hot = next((m for m in medians if m["variant"] == "hot"), None)
    goals = (
        [
            {
                "goal": GOAL,
                "measured": f"hot: median {hot['back_on_old_ms']} ms, worst "
                f"{hot['back_on_old_worst_ms']} ms",
                "met": hot["back_on_old_worst_ms"] < 1000,
            }
        ]
        if hot
        else []
    )
    notes = [
        "back on old counts from the verdict, so it includes the rollback's own set-up "
        "(deploy lock, state file, Docker and Compose probes, the revive check) before 'set map'"
        "; the record's rollback time counts from inside commands.rollback, after that set-up",
    ]
    retired = next((m for m in medians if m["variant"] == "retired"), None)
    if retired:
        notes.append(
            "retired: the old colour's containers are started again first (Compose start, "
            "Docker healthy after its healthcheck passes, checked every 2 s, HAProxy UP after "
            "'rise 2' checks 1 s apart, serving on its preview): that revive cost is most of "
            "the time back; each run's steps_ms has its progress, ms after the verdict: "
            f"{[r['steps_ms'] for r in runs if r['variant'] == 'retired']}"
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
