"""Latency: the colour under test is fast enough, and no slower than the live colour.

A gate of the deploy. An absolute budget alone lets through a release much slower than the one
it replaces as long as it stays under the budget, so the new colour is also measured side by
side with the live one, each through its own preview route, interleaved in the same run, and its
p99 may exceed the live colour's by the configured margin only.

One run serves the module's gates, and its table is printed for the report. A gate that fails
on it measures once more and judges both runs together before failing the deploy: on a busy
machine a p99 over a few hundred requests moves by a hundred milliseconds from run to run,
while a real slowdown shows in every run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from pytest_bluegreen import Target, not_applicable
from pytest_bluegreen.checks.latency import (
    Measurement,
    TargetLatency,
    budget_problems,
    describe_errors,
    measure,
    pool,
    regression,
)
from pytest_bluegreen.core.colours import COLOURS, Colour
from pytest_bluegreen.core.config import StackConfig


@dataclass
class Run:
    """The measurement of the new colour (and the live one), and its confirmation if needed."""

    measure_once: Callable[[], Measurement]
    new_name: str
    live_name: str | None  # None: nothing live, or the live colour is the one under test
    why_no_live: str
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

    def _measure(self, title: str) -> Measurement:
        measurement = self.measure_once()
        print(f"\n{title} (ms):\n{measurement.table()}")
        return measurement


@pytest.fixture(scope="module")
def _runs() -> dict[tuple[str, str | None], Run]:
    """Runs of this module by (new URL, live URL): the gates share them."""
    return {}


@pytest.fixture
def latency(
    _runs: dict[tuple[str, str | None], Run],
    bluegreen_config: StackConfig,
    bluegreen_target: Target,
    bluegreen_idle_url: str,
    bluegreen_live_colour: Colour | None,
) -> Run:
    """The run of the colour under test (its preview route) beside the live colour's route.

    The fixtures it needs are per test, so the run is kept in a module fixture instead.
    """
    cfg = bluegreen_config
    new_colour = next((c for c in COLOURS if cfg.preview_url(c) == bluegreen_idle_url), "new")
    targets = {f"{new_colour} (new)": bluegreen_idle_url}
    live_url: str | None = None
    why_no_live = "no live colour (a first deploy): nothing to compare with"
    if bluegreen_live_colour is not None:
        why_no_live = f"the live colour {bluegreen_live_colour} is the colour under test"
        if cfg.preview_url(bluegreen_live_colour) != bluegreen_idle_url:
            live_url = cfg.preview_url(bluegreen_live_colour)
            targets[f"{bluegreen_live_colour} (live)"] = live_url
    key = (bluegreen_idle_url, live_url)
    if key not in _runs:
        names = list(targets)
        _runs[key] = Run(
            lambda: measure(
                targets,
                bluegreen_target.critical_paths,
                cfg.latency_rounds,
                ca_file=bluegreen_target.ca_file,
            ),
            names[0],
            names[1] if len(names) > 1 else None,
            why_no_live,
        )
    return _runs[key]


def _judged(run: Run, judge: Callable[[TargetLatency, TargetLatency | None], list[str]]) -> str:
    """Problems of the first run, confirmed over both runs; "" when there are none."""
    first = run.first
    if not first.complete:
        return (
            f"the measurement stopped at its limit of {first.max_duration_s:.0f} s after "
            f"{first.rounds_done} of {first.rounds} rounds: the answers are too slow to measure"
        )
    if not judge(first.targets[run.new_name], _live(run, first)):
        return ""
    both = run.pooled()
    new = both.targets[run.new_name]
    problems = judge(new, _live(run, both))
    if not run.runs[1].complete:
        problems.append(f"the confirmation run stopped after {run.runs[1].rounds_done} rounds")
    confirmation_errors = run.runs[1].targets[run.new_name].errors
    if confirmation_errors:
        problems.append(
            f"{len(confirmation_errors)} requests failed in the confirmation run: "
            + describe_errors(confirmation_errors)
        )
    if not problems:
        print("the first run's problems did not hold over both runs together")
        return ""
    return "; ".join(problems) + f" (over two runs, {new.overall.requests} requests)"


def _live(run: Run, measurement: Measurement) -> TargetLatency | None:
    return measurement.targets[run.live_name] if run.live_name else None


def test_no_errors(latency: Run) -> None:
    new = latency.first.targets[latency.new_name]
    if new.errors:
        pytest.fail(
            f"{len(new.errors)} requests to {new.name} at {new.url} failed while measuring "
            f"latency: {new.error_summary()}",
            pytrace=False,
        )


def test_new_colour_within_budget(latency: Run, bluegreen_config: StackConfig) -> None:
    p50_ms, p99_ms = bluegreen_config.latency_p50_budget_ms, bluegreen_config.latency_p99_budget_ms
    problem = _judged(latency, lambda new, live: budget_problems(new, p50_ms, p99_ms))
    if problem:
        new = latency.latest().targets[latency.new_name]
        slowest = ", ".join(
            f"{path} p50 {s.p50_ms:.1f} ms, p99 {s.p99_ms:.1f} ms" for path, s in new.slowest(3)
        )
        pytest.fail(
            f"{new.name} at {new.url} is over the latency budget (all paths: p50 {p50_ms:.0f} ms "
            f"and p99 {p99_ms:.0f} ms, each path: p50 {p50_ms:.0f} ms; settings "
            f"latency_p50_budget_ms, latency_p99_budget_ms): {problem}; slowest paths: {slowest}",
            pytrace=False,
        )


def test_no_regression_against_live_colour(latency: Run, bluegreen_config: StackConfig) -> None:
    if latency.live_name is None:
        not_applicable(latency.why_no_live)
    margin_ms = bluegreen_config.latency_margin_ms

    def judge(new: TargetLatency, live: TargetLatency | None) -> list[str]:
        assert live is not None
        problem = regression(new, live, margin_ms)
        return [problem] if problem else []

    problem = _judged(latency, judge)
    if problem:
        pytest.fail(f"{problem}; setting latency_margin_ms", pytrace=False)
