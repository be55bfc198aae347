"""HTTP: every critical path answers as expected, from the colour and release being deployed.

A gate of the deploy (``bluegreen:http``), through the idle colour's preview route before the
switch: each of ``critical_paths`` answers its status in ``expected_status`` (200 when not
listed, redirects followed; a listed path is judged on its own answer), and the
``X-Bluegreen-Colour`` and ``X-Bluegreen-Release`` headers HAProxy adds name the colour and
release under test.
"""

from __future__ import annotations

from pytest_bluegreen import StackConfig, Target
from pytest_bluegreen.gates._assertions import assert_paths_served


def test_critical_paths_answer_from_the_new_release(
    bluegreen_target: Target, bluegreen_config: StackConfig
) -> None:
    assert_paths_served(bluegreen_target, bluegreen_config.gates.expected_status)
