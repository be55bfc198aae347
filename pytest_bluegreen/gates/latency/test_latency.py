"""Latency: the colour under test is fast enough, and no slower than the live colour.

A gate of the deploy (``bluegreen:latency``). An absolute budget alone lets through a release
much slower than the one it replaces as long as it stays under the budget, so the new colour is
also measured side by side with the live one, each through its own preview route, interleaved in
the same run, and its p99 may exceed the live colour's by the configured margin only. On a first
deploy nothing is live: the comparison is not applicable, the budgets still apply.

One run serves the module's gates, and its table is printed for the report; a gate that fails on
it is confirmed by a second run first (:class:`~pytest_bluegreen.checks.latency.ConfirmedRun`).
Settings: ``latency_rounds``, ``latency_p50_budget_ms``, ``latency_p99_budget_ms``,
``latency_margin_ms``, ``critical_paths``.
"""

from __future__ import annotations

import pytest

from pytest_bluegreen import COLOURS, Colour, StackConfig, Target, not_applicable
from pytest_bluegreen.checks.latency import (
    ConfirmedRun,
    TargetLatency,
    budget_problems,
    measure,
    regression,
)


@pytest.fixture(scope="module")
def _runs() -> dict[tuple[str, str | None], ConfirmedRun]:
    """Runs of this module by (new URL, live URL): the gates share them."""
    return {}


@pytest.fixture
def latency(
    _runs: dict[tuple[str, str | None], ConfirmedRun],
    bluegreen_config: StackConfig,
    bluegreen_target: Target,
    bluegreen_idle_url: str,
    bluegreen_live_colour: Colour | None,
) -> ConfirmedRun:
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
        _runs[key] = ConfirmedRun(
            lambda: measure(
                targets,
                bluegreen_target.critical_paths,
                cfg.gates.latency_rounds,
                ca_file=bluegreen_target.ca_file,
            ),
            names[0],
            names[1] if len(names) > 1 else None,
            why_no_live,
        )
    return _runs[key]


def test_no_errors(latency: ConfirmedRun) -> None:
    new = latency.first.targets[latency.new_name]
    if new.errors:
        pytest.fail(
            f"{len(new.errors)} requests to {new.name} at {new.url} failed while measuring "
            f"latency: {new.error_summary()}",
            pytrace=False,
        )


def test_new_colour_within_budget(latency: ConfirmedRun, bluegreen_config: StackConfig) -> None:
    p50_ms, p99_ms = (
        bluegreen_config.gates.latency_p50_budget_ms,
        bluegreen_config.gates.latency_p99_budget_ms,
    )
    problem = latency.problem(lambda new, live: budget_problems(new, p50_ms, p99_ms))
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


def test_no_regression_against_live_colour(
    latency: ConfirmedRun, bluegreen_config: StackConfig
) -> None:
    if latency.live_name is None:
        not_applicable(latency.why_no_live)
    margin_ms = bluegreen_config.gates.latency_margin_ms

    def judge(new: TargetLatency, live: TargetLatency | None) -> list[str]:
        assert live is not None
        problem = regression(new, live, margin_ms)
        return [problem] if problem else []

    problem = latency.problem(judge)
    if problem:
        pytest.fail(f"{problem}; setting latency_margin_ms", pytrace=False)
