from __future__ import annotations

import pytest

from pytest_bluegreen.core.errors import DeployError
from pytest_bluegreen.core.load_figures import Sample, Window, figures, percentile


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 99) == 0.0


def test_window_counts_failures_and_latency() -> None:
    window = Window.of(
        [Sample(0, 10, True, "blue"), Sample(0, 30, False, None), Sample(0, 20, True, "blue")]
    )
    assert window == Window(requests=3, failures=1, p50_ms=20.0, p99_ms=30.0)


def test_figures_split_at_the_switch() -> None:
    start, switch_at = 1000.0, 1003.0
    samples = [Sample(start + i / 10, 5.0, True, "blue") for i in range(30)]  # 3 s before
    samples += [Sample(switch_at + i / 10, 8.0, True, "green") for i in range(10)]  # 1 s after
    samples += [Sample(switch_at + 1 + i / 10, 6.0, i != 3, "green") for i in range(20)]
    samples.append(Sample(switch_at + 0.5, 40.0, True, "blue"))  # late answer from the old colour
    result = figures(samples, switch_at, old_colour="blue")
    assert result.before == Window(20, 0, 5.0, 5.0)  # the first second (set-up) left out
    assert result.first_second.requests == 11
    assert result.first_second.p99_ms == 40.0
    assert result.after == Window(20, 1, 6.0, 6.0)
    assert result.total.requests == 61
    assert result.total.failures == 1
    assert result.old_colour_after_switch == 1
    assert result.p99_overhead_ms == 35.0
    assert result.switch_at_s == 3.0
    assert [row["requests"] for row in result.series] == [10, 10, 10, 11, 10, 10]
    assert result.series[4]["failures"] == 1  # 1004.3 s: the fifth second
    assert result.to_dict()["p99_overhead_ms"] == 35.0


def test_no_sample_is_an_error() -> None:
    with pytest.raises(DeployError, match="recorded no request"):
        figures([], 0.0, "blue")


def test_a_rollback_ends_the_after_window_and_is_timed_back_on_the_old_colour() -> None:
    start, switch_at, rollback_at = 1000.0, 1002.0, 1004.0
    samples = [Sample(start + i / 10, 5.0, True, "blue") for i in range(20)]  # before
    samples += [Sample(switch_at + i / 10, 7.0, i % 5 != 0, "green") for i in range(20)]
    samples.append(Sample(rollback_at + 0.05, 9.0, True, "green"))  # in flight at the rollback
    samples += [Sample(rollback_at + 0.1 + i / 10, 5.0, True, "blue") for i in range(10)]
    result = figures(samples, switch_at, old_colour="blue", rollback_at=rollback_at)
    assert result.before.requests == 10
    assert result.after.requests == 10  # 1003.0-1004.0: ends at the rollback
    assert result.first_second.requests == 10
    assert result.old_colour_after_switch == 0  # the old colour's answers after the rollback
    assert result.total.requests == 51
    assert result.total.failures == 4
    assert result.rollback_at_s == 4.0
    assert result.back_on_old_ms == 50.0


def test_without_a_rollback_there_is_no_rollback_timing() -> None:
    samples = [Sample(1000.0 + i / 10, 5.0, True, "blue") for i in range(20)]
    result = figures(samples, 1001.0, old_colour="green")
    assert result.rollback_at_s is None
    assert result.back_on_old_ms is None
