"""What the switch and rollback benches share: their own reference stack, figures, the table.

Each bench runs one real reference stack as its own Compose project (default ``bgbench``), on
loopback ports ``port_base + 443`` etc., with its state folder and secrets in a work folder of
its own, so it never touches another stack on the machine. The stack is torn down (``down -v``)
at the end, also on Ctrl-C or SIGTERM, unless asked to keep it. The throwaway stack itself
(settings, bring-up, teardown, a user's ``pytest --bg-deploy``) is :mod:`tests.harness`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.loadgen import LoadResult, Sample  # noqa: E402
from pytest_bluegreen.adapters.engines.compose import ComposeStack  # noqa: E402
from pytest_bluegreen.core import load_figures as load  # noqa: E402
from pytest_bluegreen.core.colours import COLOURS  # noqa: E402
from pytest_bluegreen.core.config import StackConfig  # noqa: E402
from pytest_bluegreen.core.errors import BluegreenError  # noqa: E402
from tests import harness  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_settings(
    project: str, home: Path, port_base: int, settings: Mapping[str, Any] | None = None
) -> harness.Throwaway:
    """Settings of a throwaway stack whose state and secrets live in ``home``."""
    ports = harness.ports(port_base)
    return harness.Throwaway(project, home, ports, env_file="bench.env", settings=settings or {})


def bench_config(project: str, home: Path, port_base: int) -> StackConfig:
    """The settings of :func:`bench_settings`, written and read back."""
    return bench_settings(project, home, port_base).config()


@dataclass
class BenchStack(harness.StackUser):
    """The bench's stack, up with both colours healthy, blue live; its work folder is ``home``."""

    keep: bool


def _healthy(stack: ComposeStack) -> bool:
    cfg = stack.config
    services = [cfg.database.service, cfg.services.loadbalancer]
    services += [s for c in COLOURS for s in cfg.services.services_of(c)]
    try:
        if stack.running_services(services) != services:
            return False
        return not any(stack.router.not_ready(c) for c in COLOURS)
    except BluegreenError:
        return False


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def add_stack_options(parser: argparse.ArgumentParser) -> None:
    """The options of :func:`bench_stack`: ``--project``, ``--port-base``, ``--work-dir``..."""
    parser.add_argument("--project", default="bgbench")
    parser.add_argument("--port-base", type=int, default=48000)
    parser.add_argument("--work-dir", type=Path, help="state folder to use and keep")
    parser.add_argument("--keep-stack", action="store_true", help="leave the stack running")


@contextlib.contextmanager
def bench_stack(
    project: str, port_base: int, work_dir: Path | None, keep: bool
) -> Iterator[BenchStack]:
    """Bring the stack up (or reuse it, healthy, in a given ``work_dir``); remove it after.

    A fresh temporary work folder means fresh secrets, so a leftover project of the same name
    (a killed run) is removed with its volumes first. SIGTERM ends the run like Ctrl-C.
    """
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    folder: contextlib.AbstractContextManager[Path] = (
        harness.short_home(f"{project}-", keep=keep)
        if work_dir is None
        else contextlib.nullcontext(work_dir)
    )
    try:
        with folder as home:
            home.mkdir(parents=True, exist_ok=True)
            settings = bench_settings(project, home, port_base)
            fresh = work_dir is None
            with harness.throwaway_stack(
                settings, fresh=fresh, keep=keep, progress=lambda m: log(f"stack: {m}")
            ) as stack:
                if fresh or not _healthy(stack):
                    log(f"stack {project} up in {harness.bring_up(stack):.1f}s")
                else:
                    log(f"reusing the healthy stack {project} in {home}")
                yield BenchStack(settings, stack, keep)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def host_info(changed_paths: Sequence[str] = ("bench",)) -> dict[str, Any]:
    """CPU, kernel, Python, commit (marked when ``changed_paths`` have changes), date, load."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(REPO), "status", "--porcelain", "--", *changed_paths])
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit + ("+bench-changes" if dirty != "?" else ""),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def machine_info(stack: ComposeStack) -> dict[str, Any]:
    """The host, and HAProxy (asked in the running loadbalancer) and Docker: what ran the bench."""
    lb = stack.container_ids(stack.config.services.loadbalancer, running_only=True)
    return {
        **host_info(),
        "haproxy": _first_line(["docker", "exec", lb[0], "haproxy", "-v"]) if lb else "?",
        "docker": _first_line(["docker", "version", "--format", "{{.Server.Version}}"]),
    }


def publish(
    out: Path, doc: dict[str, Any], goals: Sequence[dict[str, Any]], notes: Sequence[str]
) -> None:
    """Write the results' JSON, then print each goal as met or MISSED, and the notes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for goal in goals:
        print(f"  [{'met' if goal['met'] else 'MISSED'}] {goal['goal']}: {goal['measured']}")
    for note in notes:
        print(f"  note: {note}")


# -- figures -----------------------------------------------------------------------------------


def client_figures(result: LoadResult, seconds: float, rate: float) -> dict[str, Any]:
    """Whether the client kept up: achieved rate, lag behind the schedule, CPU per process."""
    lags = sorted(s.lag_ms for s in result.samples)
    return {
        "target_rate": rate,
        "achieved_rate": round(len(result.samples) / seconds, 1),
        "lag_p99_ms": round(load.percentile(lags, 99), 1),
        "late_over_10ms": sum(1 for x in lags if x > 10),
        "unsent": result.unsent,
        "cpu_share": {k: round(v / seconds, 2) for k, v in result.cpu_s.items()},
        "connections": result.connections,
        "retried_on_new_connection": result.retried,
    }


def moved_after(
    samples: Sequence[Sample], since: float, from_colour: str, to_colour: str
) -> float | None:
    """Ms from ``since`` to the start of the last request after it answered by ``from_colour``.

    0 when no request that started after ``since`` was answered by ``from_colour``; None when
    none was answered by ``to_colour`` either (the traffic never moved).
    """
    after = [s for s in samples if s.t >= since]
    if not any(s.colour == to_colour for s in after):
        return None
    stragglers = [s.t for s in after if s.colour == from_colour]
    return round((max(stragglers) - since) * 1000, 3) if stragglers else 0.0


def median(values: Sequence[float | None]) -> float | None:
    """Median of the known values; None when a value is None in most runs (e.g. "never")."""
    known = [v for v in values if v is not None]
    if not known or len(known) * 2 <= len(values) - 1:
        return None
    return round(statistics.median(known), 3)


def render_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], first: str
) -> str:
    """A plain text table: ``columns`` are (key, header); None shows as "never"/"-"."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
        return str(value)

    headers = [first, *(h for _, h in columns)]
    body = [[str(r[first]), *(cell(r.get(k)) for k, _ in columns)] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(headers, *body, strict=False)]
    line = "  ".join(
        h.rjust(w) if i else h.ljust(w)
        for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    )
    out = [line, "-" * len(line)]
    for cells in body:
        out.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    return "\n".join(out)


def wait_until(
    check: Callable[[], bool], timeout_s: float, interval_s: float = 0.01
) -> float | None:
    """Seconds until ``check()`` holds, polled; None when it did not within ``timeout_s``."""
    start = time.perf_counter()
    while True:
        if check():
            return time.perf_counter() - start
        if time.perf_counter() - start >= timeout_s:
            return None
        time.sleep(interval_s)


def self_signed_ca(config: StackConfig) -> Path:
    """The stack's own CA: the benches measure the reference stack, which makes its own."""
    if config.ca_file is None:
        raise SystemExit("the benches need tls = 'self-signed' (the reference stack's)")
    return config.ca_file
