"""Post-deploy: through the public URL, the new colour and release serve every critical path.

The verify stage of a deploy (``postdeploy_suite = "bluegreen:postdeploy"``), after the switch,
and on its own against any deployment::

    pytest --bg-suite postdeploy --bg-target https://example.org [--bg-expect-colour green]
        [--bg-expect-release r42] [--bg-ca-file ca.pem] [-n auto]

Each critical path answers its expected status from the expected colour and release, and the
median of a few requests to it is within ``latency_p99_budget_ms``.
"""

from __future__ import annotations

from pytest_bluegreen import StackConfig, Target
from pytest_bluegreen.gates._assertions import assert_median_within, assert_paths_served


def test_critical_paths_serve_the_new_release(
    bluegreen_target: Target, bluegreen_config: StackConfig
) -> None:
    assert_paths_served(bluegreen_target, bluegreen_config.gates.expected_status)


def test_critical_paths_answer_within_budget(
    bluegreen_target: Target, bluegreen_config: StackConfig
) -> None:
    assert_median_within(
        bluegreen_target,
        bluegreen_config.gates.latency_p99_budget_ms,
        bluegreen_config.gates.expected_status,
    )
