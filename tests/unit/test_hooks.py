"""The ``pytest_bluegreen_*`` hooks and the fixtures' registration, in throwaway projects."""

from __future__ import annotations

import json

import pytest

RECORDING_CONFTEST = """
import json

import pytest


def _save(name, **fields):
    with open("hooks.jsonl", "a") as out:
        out.write(json.dumps({"hook": name, **fields}) + "\\n")


@pytest.hookimpl(optionalhook=True)
def pytest_bluegreen_stage_ended(config, stage, outcome, duration_s, message):
    _save("stage_ended", stage=stage, outcome=outcome, duration_s=duration_s, message=message)


@pytest.hookimpl(optionalhook=True)
def pytest_bluegreen_traffic_switched(config, from_colour, to_colour, reason, record):
    _save("traffic_switched", from_colour=from_colour, to_colour=to_colour, reason=reason,
          record=record)
"""

STAND_IN_TRACKER = """
from pytest_bluegreen.core.record import DeployRecord
from pytest_bluegreen.session import TRACKER_KEY
from pytest_bluegreen.stage_tracker import StageTracker


class StandInDeployment:
    switched = False
    concluded = False

    def __init__(self):
        self.record = DeployRecord(id="20261202T000000Z-000000", release="r1",
                                   from_colour="blue", to_colour="green")

    def stage_done(self, name, outcome, duration_s, message=""):
        pass

    def conclude(self, failed_stage, error, verdict_at):
        self.concluded = True
        self.record.finish("deployed" if failed_stage is None else "aborted", error=error)


def pytest_configure(config):
    tracker = StageTracker(config.rootpath / "post", StandInDeployment, config=config)
    config.stash[TRACKER_KEY] = tracker
    config.pluginmanager.register(tracker, "stages-under-test")
"""


def hook_calls(pytester: pytest.Pytester) -> list[dict[str, object]]:
    path = pytester.path / "hooks.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_stage_ended_is_called_once_per_stage_that_ran(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RECORDING_CONFTEST + STAND_IN_TRACKER)
    pytester.makepyfile(
        """
        import pytest
        from pytest_bluegreen import not_applicable

        @pytest.mark.bluegreen_stage("prerequisites")
        def test_prerequisites(bluegreen_deployment):
            pass

        @pytest.mark.bluegreen_stage("migration")
        def test_migration(bluegreen_deployment):
            not_applicable("first deploy")

        def test_gate(bluegreen_deployment):
            assert False, "API answers 500"

        @pytest.mark.bluegreen_stage("switch")
        def test_switch(bluegreen_deployment):
            pass
        """
    )
    result = pytester.runpytest("-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.assert_outcomes(passed=1, failed=1, skipped=2)
    calls = hook_calls(pytester)
    assert [(c["stage"], c["outcome"]) for c in calls] == [
        ("prerequisites", "passed"),
        ("migration", "skipped"),
        ("gates", "failed"),
    ]
    assert calls[0]["message"] == "1 passed"
    assert calls[1]["message"] == "1 not_applicable"
    assert str(calls[2]["message"]).startswith("stage gates failed: ")
    assert "API answers 500" in str(calls[2]["message"])
    assert all(isinstance(c["duration_s"], float) and c["duration_s"] >= 0 for c in calls)


def test_a_deploy_that_cannot_reach_docker_ends_its_prerequisites_failed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real plugin and deployment: the first stage fails, the hook says so, nothing else ran.

    In a subprocess: a deploy session installs a SIGTERM handler.
    """
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    pytester.makeconftest(RECORDING_CONFTEST)
    pytester.makefile(".yml", compose="services: {}\n")
    pytester.makefile(
        ".toml",
        bluegreen="""
        compose_files = ["compose.yml"]
        gate_suites = ["suites/gates"]
        postdeploy_suite = "suites/postdeploy"
        """,
    )
    pytester.mkdir("suites")
    pytester.mkdir("suites/gates")
    pytester.mkdir("suites/postdeploy")
    result = pytester.runpytest_subprocess(
        "--bg-deploy", "--bg-release", "r1", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["!! stage prerequisites failed: *"])
    calls = hook_calls(pytester)
    assert [(c["stage"], c["outcome"]) for c in calls] == [("prerequisites", "failed")]
    assert str(calls[0]["message"]).startswith("stage prerequisites failed: ")
    assert "Docker" in str(calls[0]["message"])


def test_the_hook_observer_calls_traffic_switched(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RECORDING_CONFTEST)
    pytester.makepyfile(
        """
        from pytest_bluegreen.plugin import HookObserver

        def test_switch(request):
            HookObserver(request.config).traffic_switched("blue", "green", "switch")
            HookObserver(request.config).traffic_switched("green", "blue", "rollback")
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert hook_calls(pytester) == [
        {
            "hook": "traffic_switched",
            "from_colour": "blue",
            "to_colour": "green",
            "reason": "switch",
            "record": None,  # no deploy session here
        },
        {
            "hook": "traffic_switched",
            "from_colour": "green",
            "to_colour": "blue",
            "reason": "rollback",
            "record": None,
        },
    ]


def test_the_hooks_are_known_to_pytest(pytester: pytest.Pytester) -> None:
    """Implemented without ``optionalhook``, they validate: the plugin added their specs."""
    pytester.makeconftest(
        """
        def pytest_bluegreen_stage_ended(config, stage, outcome, duration_s, message):
            pass

        def pytest_bluegreen_traffic_switched(config, from_colour, to_colour, reason, record):
            pass
        """
    )
    pytester.makepyfile("def test_x(): pass")
    pytester.runpytest().assert_outcomes(passed=1)


def test_the_fixtures_are_documented_for_pytest_fixtures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures")
    # pytest lists them by the text of "file:line" (":104" before ":30"), so one at a time.
    result.stdout.fnmatch_lines(
        [
            "*fixtures defined from pytest_bluegreen.fixtures*",
            "bluegreen_config* -- *fixtures.py:*",
            "*The validated settings of the stack*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*fixtures defined from pytest_bluegreen.fixtures*",
            "bluegreen_target -- *fixtures.py:*",
            "*What a suite checks: the idle colour's preview route or the public URL.*",
        ]
    )
    assert result.ret == 0


def test_no_bluegreen_removes_the_fixtures_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(bluegreen_live_url): pass")
    result = pytester.runpytest("-p", "no:bluegreen")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'bluegreen_live_url' not found*"])
    assert "--bg-deploy" not in pytester.runpytest("-p", "no:bluegreen", "--help").stdout.str()
