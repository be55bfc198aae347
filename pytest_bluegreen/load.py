"""Load across the switch: Locust in its own process, and the figures a deploy is judged by.

The locustfile logs every request; the figures come from those samples, split at the moment of
the switch: failures, p50/p99 before, in the second after, and after; a per-second series for the
report; and which colour answered requests that started after the switch.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pytest_bluegreen.errors import DeployError

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # start time, epoch seconds
    ms: float
    ok: bool
    colour: str | None


@dataclass(frozen=True, slots=True)
class Window:
    requests: int
    failures: int
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, samples: list[Sample]) -> Window:
        latencies = sorted(s.ms for s in samples)
        return cls(
            requests=len(samples),
            failures=sum(not s.ok for s in samples),
            p50_ms=round(percentile(latencies, 50), 3),
            p99_ms=round(percentile(latencies, 99), 3),
        )


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class LoadFigures:
    before: Window
    first_second: Window  # the second after the switch
    after: Window
    total: Window
    old_colour_after_switch: int  # requests started after the switch, answered by the old colour
    series: list[dict[str, float]]  # per second: t (from start), requests, failures, p50, p99
    switch_at_s: float  # seconds from the first request
    rollback_at_s: float | None = None  # seconds from the first request, when rolled back
    # After a rollback: from the rollback command to the start of the last request that the
    # old colour did not answer (0 when every request after it was the old colour's).
    back_on_old_ms: float | None = None

    @property
    def p99_overhead_ms(self) -> float:
        return round(self.first_second.p99_ms - self.before.p99_ms, 3)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["p99_overhead_ms"] = self.p99_overhead_ms
        return data


def figures(
    samples: list[Sample], switch_at: float, old_colour: str, rollback_at: float | None = None
) -> LoadFigures:
    """Split the samples at the switch (epoch seconds); ``after`` ends at a rollback."""
    samples = sorted(samples, key=lambda s: s.t)
    if not samples:
        raise DeployError("the load generator recorded no request")
    start = samples[0].t
    end = math.inf if rollback_at is None else rollback_at
    # The first second is left out of "before": it holds the clients' connection set-up (TLS
    # handshakes), which would raise the p99 the switch is compared with.
    before = [s for s in samples if start + 1 <= s.t < switch_at] or [
        s for s in samples if s.t < switch_at
    ]
    first = [s for s in samples if switch_at <= s.t < min(switch_at + 1, end)]
    after = [s for s in samples if switch_at + 1 <= s.t < end]
    switched = [s for s in samples if switch_at <= s.t < end]
    back_on_old_ms = None
    if rollback_at is not None:
        stragglers = [s.t for s in samples if s.t >= rollback_at and s.colour != old_colour]
        back_on_old_ms = round(
            max(0.0, max(stragglers, default=rollback_at) - rollback_at) * 1000, 3
        )
    series = []
    for second in range(int(samples[-1].t - start) + 1):
        bucket = [s for s in samples if start + second <= s.t < start + second + 1]
        window = Window.of(bucket)
        series.append(
            {
                "t": float(second),
                "requests": float(window.requests),
                "failures": float(window.failures),
                "p50_ms": window.p50_ms,
                "p99_ms": window.p99_ms,
            }
        )
    return LoadFigures(
        before=Window.of(before),
        first_second=Window.of(first),
        after=Window.of(after),
        total=Window.of(samples),
        old_colour_after_switch=sum(1 for s in switched if s.colour == old_colour),
        series=series,
        switch_at_s=round(switch_at - start, 3),
        rollback_at_s=None if rollback_at is None else round(rollback_at - start, 3),
        back_on_old_ms=back_on_old_ms,
    )


def last_second(samples: list[Sample], now: float) -> Window:
    """Requests that started in the second before ``now``: the live line of the terminal."""
    return Window.of([s for s in samples if now - 1 <= s.t < now])


def _die_with_parent() -> None:
    """In the child: SIGTERM when the deploy dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG).

    Without it, a killed deploy's load generator would go on until its time limit.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LoadRun:
    """A bounded Locust run against ``url`` (it stops by itself after ``max_seconds``)."""

    def __init__(
        self,
        url: str,
        workdir: Path,
        ca_file: Path | None,
        users: int = 8,
        user_rps: float = 5.0,
        paths: tuple[str, ...] = ("/api/v1/health", "/api/v1/aptos/", "/"),
        max_seconds: float = 60.0,
    ) -> None:
        self.url = url
        self.log = workdir / f"load-{os.getpid()}-{time.time_ns()}.jsonl"
        self.ca_file = ca_file
        self.users = users
        self.user_rps = user_rps
        self.paths = paths
        self.max_seconds = max_seconds
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, warmup_timeout_s: float = 30.0) -> None:
        """Start Locust and return once requests flow."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        env = {
            **os.environ,
            "BLUEGREEN_LOAD_LOG": str(self.log),
            "BLUEGREEN_LOAD_PATHS": ",".join(self.paths),
            "BLUEGREEN_LOAD_USER_RPS": str(self.user_rps),
            "BLUEGREEN_LOAD_CA": str(self.ca_file or ""),
        }
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
        argv += ["-u", str(self.users), "-r", str(self.users), "-H", self.url]
        argv += ["-t", f"{math.ceil(self.max_seconds)}s", "--only-summary", "--stop-timeout", "5"]
        argv += ["--loglevel", "WARNING"]
        with open(self.log.with_suffix(".out"), "wb") as output:  # Locust's own messages
            self._proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + warmup_timeout_s
        while len(self.samples()) < self.users:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DeployError(
                    f"the load generator did not start sending requests to {self.url}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._proc = None

    def samples(self) -> list[Sample]:
        out = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(line)
            except ValueError:
                continue  # a line being written
            out.append(Sample(data["t"], data["ms"], data["ok"], data.get("colour")))
        return out
