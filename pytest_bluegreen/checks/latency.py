"""Latency of several targets measured side by side, and the gates it is judged by.

A regression gate compares the new colour with the live one, so both are measured in the same
run and interleaved request by request: whatever else the shared machine is doing slows both
alike. Each request is timed over its full answer (body read); a request that fails or answers
with neither 2xx nor 3xx is an error and no sample, so a fast error page cannot pass for speed.
Everything is bounded: a timeout per request and a time limit for the whole measurement.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeAlias

import requests

from pytest_bluegreen.checks.probe import https_session
from pytest_bluegreen.core.load_figures import percentile

REQUEST_TIMEOUT_S: Final = 10.0
MAX_DURATION_S: Final = 120.0


@dataclass(frozen=True, slots=True)
class Percentiles:
    """p50 and p99 (nearest rank, milliseconds) of some successful requests."""

    requests: int
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Percentiles:
        ordered = sorted(samples_ms)
        return cls(len(ordered), percentile(ordered, 50), percentile(ordered, 99))


@dataclass(frozen=True, slots=True)
class RequestError:
    """A request that got no usable answer: the reason is kept so a report can show it."""

    path: str
    error: str  # "HTTP 502", "ReadTimeout: ..."
    warmup: bool = False


@dataclass(slots=True)
class TargetLatency:
    """What one target answered: samples (ms) of its successful requests per path, and errors."""

    name: str
    url: str
    samples_ms: dict[str, list[float]]
    errors: list[RequestError] = field(default_factory=list)

    @property
    def overall(self) -> Percentiles:
        """All paths together: the figure the budget and the comparison are about."""
        return Percentiles.of([ms for samples in self.samples_ms.values() for ms in samples])

    @property
    def per_path(self) -> dict[str, Percentiles]:
        return {path: Percentiles.of(samples) for path, samples in self.samples_ms.items()}

    def slowest(self, count: int = 3) -> list[tuple[str, Percentiles]]:
        """The paths with the highest p50 (then p99) first: where the time goes every time."""
        ranked = sorted(
            self.per_path.items(), key=lambda item: (item[1].p50_ms, item[1].p99_ms), reverse=True
        )
        return ranked[:count]

    def error_summary(self, count: int = 5) -> str:
        return describe_errors(self.errors, count)


def describe_errors(errors: Sequence[RequestError], count: int = 5) -> str:
    """The first errors on one line: enough to start looking."""
    shown = [f"{e.path}: {e.error}{' (warm-up)' if e.warmup else ''}" for e in errors]
    more = len(shown) - count
    return "; ".join(shown[:count]) + (f"; and {more} more" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class Measurement:
    """One side-by-side run: every target, and whether all rounds fitted in the time limit."""

    targets: dict[str, TargetLatency]
    paths: tuple[str, ...]
    rounds: int
    rounds_done: int
    duration_s: float
    max_duration_s: float

    @property
    def complete(self) -> bool:
        return self.rounds_done == self.rounds

    def table(self) -> str:
        """Per path and overall: p50/p99 of each target (ms) and its errors, as plain text."""
        names = list(self.targets)
        header = ["path"] + [f"{name} {stat}" for name in names for stat in ("p50", "p99")]
        rows = [header]
        per_path = {name: target.per_path for name, target in self.targets.items()}
        for path in (*self.paths, "all"):
            row = [path]
            for name, target in self.targets.items():
                stats = target.overall if path == "all" else per_path[name][path]
                row += [f"{stats.p50_ms:.1f}", f"{stats.p99_ms:.1f}"]
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [
            "  ".join(
                cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            )
            for row in rows
        ]
        errors = ", ".join(f"{name} {len(t.errors)}" for name, t in self.targets.items())
        lines.append(
            f"{self.rounds_done}/{self.rounds} rounds in {self.duration_s:.1f} s; errors: {errors}"
        )
        return "\n".join(lines)


def measure(
    targets: Mapping[str, str],
    paths: Sequence[str],
    rounds: int,
    ca_file: Path | None = None,
    timeout_s: float = REQUEST_TIMEOUT_S,
    max_duration_s: float = MAX_DURATION_S,
) -> Measurement:
    """GET every path ``rounds`` times on every target (``{name: base URL}``), interleaved.

    Each target first gets one untimed request per path (connections, caches). Then, each
    round, each path is requested once on every target in turn, the first target rotating from
    round to round. Redirects are not followed: a 3xx is the path's own answer. The time limit
    is checked before each path of a round, so a run takes at most ``max_duration_s`` plus one
    request timeout per target; a run cut short says so (``rounds_done < rounds``).
    """
    start = time.perf_counter()
    deadline = start + max_duration_s
    names = list(targets)
    results = {
        name: TargetLatency(name, url.rstrip("/"), {path: [] for path in paths})
        for name, url in targets.items()
    }
    sessions = {name: https_session(ca_file) for name in names}
    rounds_done = 0
    try:
        for path in paths:
            for name in names:
                if time.perf_counter() > deadline:
                    break
                _timed_get(sessions[name], results[name], path, timeout_s, warmup=True)
        out_of_time = False
        for number in range(rounds):
            shift = number % len(names) if names else 0
            order = names[shift:] + names[:shift]
            for path in paths:
                out_of_time = time.perf_counter() > deadline
                if out_of_time:
                    break
                for name in order:
                    _timed_get(sessions[name], results[name], path, timeout_s, warmup=False)
            if out_of_time:
                break
            rounds_done += 1
    finally:
        for session in sessions.values():
            session.close()
    return Measurement(
        targets=results,
        paths=tuple(paths),
        rounds=rounds,
        rounds_done=rounds_done,
        duration_s=time.perf_counter() - start,
        max_duration_s=max_duration_s,
    )


def _timed_get(
    session: requests.Session, target: TargetLatency, path: str, timeout_s: float, warmup: bool
) -> None:
    """One GET, its full answer read; a sample if it is 2xx/3xx, else an error."""
    began = time.perf_counter()
    try:
        response = session.get(target.url + path, timeout=timeout_s, allow_redirects=False)
        response.content  # noqa: B018 - the whole body is read inside the timing
    except requests.RequestException as exc:
        target.errors.append(RequestError(path, f"{type(exc).__name__}: {exc}", warmup))
        return
    elapsed_ms = (time.perf_counter() - began) * 1000
    if not 200 <= response.status_code < 400:
        target.errors.append(RequestError(path, f"HTTP {response.status_code}", warmup))
    elif not warmup:
        target.samples_ms[path].append(elapsed_ms)


def _fmt(stats: Percentiles) -> str:
    return f"p50 {stats.p50_ms:.1f} ms, p99 {stats.p99_ms:.1f} ms"


def budget_problems(target: TargetLatency, p50_budget_ms: float, p99_budget_ms: float) -> list[str]:
    """Why ``target`` is over budget; [] if it is not.

    All paths together must be within both budgets, and each path within the p50 one: an
    endpoint that is slow every time fails even when it is a small share of the requests. A
    path's own p99 is not judged: over a few tens of requests it is just the slowest one. A path
    with no successful request cannot be timed and is a problem too (gates fail closed).
    """
    problems = []
    overall = target.overall
    if not overall.requests:
        return [f"no request to {target.url} succeeded: {target.error_summary()}"]
    if overall.p50_ms > p50_budget_ms or overall.p99_ms > p99_budget_ms:
        problems.append(f"all paths ({overall.requests} requests): {_fmt(overall)}")
    for path, stats in target.per_path.items():
        if not stats.requests:
            problems.append(f"{path}: no successful request to time")
        elif stats.p50_ms > p50_budget_ms:
            problems.append(f"{path} ({stats.requests} requests): {_fmt(stats)}")
    return problems


def regression(new: TargetLatency, live: TargetLatency, margin_ms: float) -> str | None:
    """Why ``new`` is slower than ``live`` by more than ``margin_ms`` at p99; None if it is not.

    The message gives both targets' p50 and p99 and the paths whose p50 grew most: a path that
    is slower every time points at the cause, none at all says the difference is in the tail.
    """
    new_stats, live_stats = new.overall, live.overall
    if not new_stats.requests or not live_stats.requests:
        empty = new if not new_stats.requests else live
        return (
            f"nothing to compare: {empty.name} ({empty.url}) answered no request successfully "
            f"({empty.error_summary() or 'no request made'})"
        )
    excess = new_stats.p99_ms - live_stats.p99_ms
    if excess <= margin_ms:
        return None
    live_paths = live.per_path
    growth = sorted(
        (
            (stats.p50_ms - live_paths[path].p50_ms, path, stats, live_paths[path])
            for path, stats in new.per_path.items()
            if path in live_paths and stats.requests and live_paths[path].requests
        ),
        reverse=True,
        key=lambda item: item[0],
    )
    paths = "; ".join(
        f"{path} {_fmt(mine)} vs {_fmt(theirs)}" for _, path, mine, theirs in growth[:3]
    )
    return (
        f"p99 of {new.name} is {excess:.1f} ms above {live.name}'s (margin {margin_ms:.0f} ms): "
        f"{new.name} {_fmt(new_stats)}, {live.name} {_fmt(live_stats)}, over "
        f"{new_stats.requests} and {live_stats.requests} requests; largest p50 growth: {paths}"
    )


def pool(measurements: Sequence[Measurement]) -> Measurement:
    """Runs of the same targets and paths as one: more requests before a verdict that matters.

    A p99 over a few hundred requests is one of its slowest few, so a burst of noise on a busy
    machine can move it by a hundred milliseconds; a real slowdown shows in every run.
    """
    first = measurements[0]
    targets = {
        name: TargetLatency(
            name,
            target.url,
            {
                path: [ms for m in measurements for ms in m.targets[name].samples_ms[path]]
                for path in first.paths
            },
            [error for m in measurements for error in m.targets[name].errors],
        )
        for name, target in first.targets.items()
    }
    return Measurement(
        targets=targets,
        paths=first.paths,
        rounds=sum(m.rounds for m in measurements),
        rounds_done=sum(m.rounds_done for m in measurements),
        duration_s=sum(m.duration_s for m in measurements),
        max_duration_s=sum(m.max_duration_s for m in measurements),
    )


# A verdict on the new colour (beside the live one): its problems, [] when there are none.
Judge: TypeAlias = Callable[[TargetLatency, TargetLatency | None], list[str]]


@dataclass
class ConfirmedRun:
    """A measurement of the new colour (beside the live one), confirmed before a failure.

    A gate that fails on the first run measures once more and judges both runs together: on a
    busy machine a p99 over a few hundred requests moves by a hundred milliseconds from run to
    run, while a real slowdown shows in every run. Each run's table goes to ``report``.
    """

    measure_once: Callable[[], Measurement]
    new_name: str
    live_name: str | None  # None: nothing live, or the live colour is the one under test
    why_no_live: str
    report: Callable[[str], None] = print
    runs: list[Measurement] = field(default_factory=list)

    @property
    def first(self) -> Measurement:
        if not self.runs:
            self.runs.append(self._measure("latency"))
        return self.runs[0]

    def latest(self) -> Measurement:
        """What the last verdict was based on: both runs if there are two, else the first."""
        return pool(self.runs[:2]) if len(self.runs) > 1 else self.first

    def pooled(self) -> Measurement:
        """The first run and a second one, judged together (the second is measured once)."""
        if len(self.runs) < 2:
            self.runs.append(self._measure("latency, confirmation run"))
        return pool(self.runs[:2])

    def live(self, measurement: Measurement) -> TargetLatency | None:
        return measurement.targets[self.live_name] if self.live_name else None

    def problem(self, judge: Judge) -> str:
        """Problems of the first run, confirmed over both runs; "" when there are none."""
        first = self.first
        if not first.complete:
            return (
                f"the measurement stopped at its limit of {first.max_duration_s:.0f} s after "
                f"{first.rounds_done} of {first.rounds} rounds: the answers are too slow to measure"
            )
        if not judge(first.targets[self.new_name], self.live(first)):
            return ""
        both = self.pooled()
        new = both.targets[self.new_name]
        problems = judge(new, self.live(both))
        if not self.runs[1].complete:
            problems.append(f"the confirmation run stopped after {self.runs[1].rounds_done} rounds")
        confirmation_errors = self.runs[1].targets[self.new_name].errors
        if confirmation_errors:
            problems.append(
                f"{len(confirmation_errors)} requests failed in the confirmation run: "
                + describe_errors(confirmation_errors)
            )
        if not problems:
            self.report("the first run's problems did not hold over both runs together")
            return ""
        return "; ".join(problems) + f" (over two runs, {new.overall.requests} requests)"

    def _measure(self, title: str) -> Measurement:
        measurement = self.measure_once()
        self.report(f"\n{title} (ms):\n{measurement.table()}")
        return measurement
