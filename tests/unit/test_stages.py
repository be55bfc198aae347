"""The stage machinery of a deploy session, with a stand-in deployment (no Docker)."""

from __future__ import annotations

import json
from typing import Any

import pytest

CONFTEST = """
import json
from pathlib import Path

import pytest

from pytest_bluegreen.session import TRACKER_KEY
from pytest_bluegreen.core.record import DeployRecord
from pytest_bluegreen.stage_tracker import StageTracker, terminal_writer


class StandInDeployment:
    switched = False
    concluded = False

    def __init__(self):
        self.record = DeployRecord(id="20261129T000000Z-000000", release="r1",
                                   from_colour="blue", to_colour="green",
                                   started_at="2026-11-29T00:00:00.000Z")
        self.stages = {}

    def stage_done(self, name, outcome, duration_s, message=""):
        self.stages[name] = [outcome, message]

    def conclude(self, failed_stage, error, verdict_at):
        self.concluded = True
        self.record.finish("deployed" if failed_stage is None else "aborted", error=error)
        Path("conclusion.json").write_text(json.dumps({
            "failed_stage": failed_stage, "error": error,
            "verdict": verdict_at is not None, "stages": self.stages,
        }))


def pytest_configure(config):
    tracker = StageTracker(config.rootpath / "post", StandInDeployment)
    tracker.write = terminal_writer(config)
    config.stash[TRACKER_KEY] = tracker
    config.pluginmanager.register(tracker, "stages-under-test")
"""

STAGES = """
import pytest
from pytest_bluegreen.stage_tracker import not_applicable

ran = []

@pytest.mark.bluegreen_stage("retire")
def test_retire(bluegreen_deployment):
    ran.append("retire")

@pytest.mark.bluegreen_stage("switch")
def test_switch(bluegreen_deployment):
    ran.append("switch")

@pytest.mark.bluegreen_stage("prerequisites")
def test_prerequisites(bluegreen_deployment):
    ran.append("prerequisites")

def test_gate():
    ran.append("gate")
    {gate}
"""

POST = """
def test_verify():
    {verify}
"""


def run(
    pytester: pytest.Pytester, gate: str = "pass", verify: str = "pass"
) -> tuple[pytest.RunResult, dict[str, Any]]:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_stages=STAGES.format(gate=gate))
    pytester.mkdir("post")
    pytester.makepyfile(**{"post/test_post": POST.format(verify=verify)})
    result = pytester.runpytest("-v", "-W", "ignore::pytest.PytestAssertRewriteWarning")
    conclusion = json.loads((pytester.path / "conclusion.json").read_text())
    return result, conclusion


def test_items_run_in_stage_order(pytester: pytest.Pytester) -> None:
    result, conclusion = run(pytester)
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "== stage 1/11: prerequisites",
            "*::test_prerequisites PASSED*",
            "== stage 7/11: gates",
            "*::test_gate PASSED*",
            "== stage 8/11: switch",
            "*::test_switch PASSED*",
            "== stage 9/11: verify",
            "*::test_verify PASSED*",
            "== stage 11/11: retire",
            "*::test_retire PASSED*",
        ]
    )
    assert conclusion["failed_stage"] is None
    assert conclusion["stages"]["gates"] == ["passed", "1 passed"]
    assert result.ret == 0


def test_a_failed_gate_stops_the_deploy_before_the_switch(pytester: pytest.Pytester) -> None:
    result, conclusion = run(pytester, gate="assert False, 'API answers 500'")
    result.assert_outcomes(passed=1, failed=1, skipped=3)
    result.stdout.fnmatch_lines(["*SKIPPED (deploy stopped: stage gates failed)*"])
    assert conclusion["failed_stage"] == "gates"
    assert "API answers 500" in conclusion["error"]
    assert conclusion["verdict"]  # the time of every failed verdict is kept
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_skipped_gate_fails_closed(pytester: pytest.Pytester) -> None:
    result, conclusion = run(pytester, gate="pytest.skip('no database here')")
    assert conclusion["failed_stage"] == "gates"
    assert "skipped, and a deploy fails closed (no database here)" in conclusion["error"]
    result.stdout.fnmatch_lines(["*::test_switch SKIPPED (deploy stopped: stage gates failed)*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_not_applicable_gate_lets_the_deploy_go_on(pytester: pytest.Pytester) -> None:
    result, conclusion = run(pytester, gate="not_applicable('first deploy: nothing is live')")
    result.stdout.fnmatch_lines(["*::test_gate SKIPPED (not applicable: first deploy*"])
    result.stdout.fnmatch_lines(["*::test_switch PASSED*"])
    assert conclusion["failed_stage"] is None
    assert conclusion["stages"]["gates"] == ["skipped", "1 not_applicable"]
    assert result.ret == 0


def test_a_post_switch_failure_records_the_verdict(pytester: pytest.Pytester) -> None:
    result, conclusion = run(pytester, verify="assert 1 == 2")
    result.assert_outcomes(passed=3, failed=1, skipped=1)
    assert conclusion["failed_stage"] == "verify"
    assert conclusion["verdict"]
    assert conclusion["stages"]["verify"][0] == "failed"


def test_an_unknown_stage_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.bluegreen_stage("deploy-it")
        def test_x():
            pass
        """
    )
    result = pytester.runpytest("-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.stderr.fnmatch_lines(["*bluegreen_stage('deploy-it') is not a stage*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
