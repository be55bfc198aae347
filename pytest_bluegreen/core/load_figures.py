"""Load across the switch: the figures a deploy is judged by, from one sample per request.

Split at the moment of the switch: failures, p50/p99 before, in the second after, and after; a
per-second series for the report; and which colour answered requests that started after it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pytest_bluegreen.core.errors import DeployError


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
    samples: Sequence[Sample],
    switch_at: float,
    old_colour: str,
    rollback_at: float | None = None,
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


def last_second(samples: Sequence[Sample], now: float) -> Window:
    """Requests that started in the second before ``now``: the live line of the terminal."""
    return Window.of([s for s in samples if now - 1 <= s.t < now])


def failed_since(samples: Sequence[Sample], moment: float) -> int:
    """Users' requests that started at or after ``moment`` (epoch seconds) and failed."""
    return sum(1 for s in samples if s.t >= moment and not s.ok)


def verdict(load: LoadFigures, failure_budget: int, p99_budget_ms: float) -> list[str]:
    """What is wrong with a switch under load: failures, p99 overhead, the old colour answering.

    Empty when the switch is within every budget.
    """
    problems = []
    if load.total.failures > failure_budget:
        problems.append(f"{load.total.failures} requests failed (budget {failure_budget})")
    if load.p99_overhead_ms > p99_budget_ms:
        problems.append(
            f"p99 rose by {load.p99_overhead_ms:.1f} ms in the second after the switch "
            f"(budget {p99_budget_ms:.0f} ms)"
        )
    if load.old_colour_after_switch:
        problems.append(
            f"{load.old_colour_after_switch} requests after the switch hit the old colour"
        )
    return problems
