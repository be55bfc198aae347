"""The gates shipped in the package: their names, their collection in a deploy, their checks.

The HTTP checks run against a real HTTP server on 127.0.0.1 (one colour, its headers and
statuses set per test); the built-in stages of a deploy are stand-ins.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib
from setuptools import find_packages

from pytest_bluegreen.core.errors import ConfigError
from pytest_bluegreen.gates import GATES_DIR, is_packaged_module, packaged_names, resolve_suite
from pytest_bluegreen.plugin import packaged_suite
from tests.unit.colour_server import NO_REWRITE_WARNING, ColourServer, project, serving

REPO = Path(__file__).resolve().parents[2]
GATES = ("hardening", "http", "latency", "postdeploy")


@pytest.fixture
def colour() -> Iterator[ColourServer]:
    with serving() as server:
        yield server


# -- names ------------------------------------------------------------------------------------


def test_the_packaged_gates() -> None:
    assert set(GATES) <= set(packaged_names())
    assert all(list((GATES_DIR / name).glob("test_*.py")) for name in packaged_names())


def test_a_packaged_name_is_its_folder_in_the_package(tmp_path: Path) -> None:
    assert resolve_suite("bluegreen:http", tmp_path) == GATES_DIR / "http"
    assert (GATES_DIR / "http" / "__init__.py").is_file()


def test_any_other_name_is_a_path_under_the_project(tmp_path: Path) -> None:
    (tmp_path / "suites" / "smoke").mkdir(parents=True)
    assert resolve_suite("suites/smoke", tmp_path) == tmp_path / "suites" / "smoke"


def test_an_unknown_packaged_name_is_one_line_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        resolve_suite("bluegreen:smoke", tmp_path)
    known = ", ".join(f"bluegreen:{name}" for name in packaged_names())
    assert str(error.value) == f"unknown packaged suite 'bluegreen:smoke'; known: {known}"
    assert "bluegreen:http, bluegreen:latency" in known


def test_a_missing_suite_says_where_it_looked_and_what_the_package_has(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"suite not found: .*/suites/migration; the packaged"):
        resolve_suite("suites/migration", tmp_path)
    with pytest.raises(ConfigError, match=r"named bluegreen:latency\)$"):
        resolve_suite("latency", tmp_path)


def test_the_test_modules_of_packaged_gates(tmp_path: Path) -> None:
    assert is_packaged_module(GATES_DIR / "http" / "test_http.py")
    assert not is_packaged_module(GATES_DIR / "_assertions.py")
    assert not is_packaged_module(GATES_DIR / "http" / "__init__.py")
    assert not is_packaged_module(tmp_path / "http" / "test_http.py")


@pytest.mark.parametrize("gate", GATES)
def test_every_gate_is_a_package_the_wheel_ships(gate: str) -> None:
    """What ``[tool.setuptools.packages.find]`` puts in the wheel (not only an editable install)."""
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = find_packages(str(REPO), include=find["packages"]["find"]["include"])
    assert f"pytest_bluegreen.gates.{gate}" in shipped


@pytest.mark.parametrize("value", ["postdeploy", "bluegreen:postdeploy"])
def test_bg_suite_takes_a_packaged_name(value: str) -> None:
    assert packaged_suite(value) == "postdeploy"


def test_bg_suite_refuses_anything_else() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="'suites/smoke' is not a suite of the"):
        packaged_suite("suites/smoke")


# -- standalone: pytest --bg-suite NAME --bg-target URL ----------------------------------------


def standalone(pytester: pytest.Pytester, suite: str, url: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "--bg-suite",
        suite,
        "--bg-target",
        url,
        "--bg-expect-colour",
        "green",
        "--bg-expect-release",
        "r2",
        "-rA",
        *NO_REWRITE_WARNING,
        *args,
    )


def test_the_http_gate_passes_the_colour_and_release_expected(
    pytester: pytest.Pytester, colour: ColourServer
) -> None:
    project(pytester)
    result = standalone(pytester, "http", colour.url)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_http.py::test_critical_paths_answer_from_the_new_release"])


def test_the_http_gate_fails_on_a_wrong_colour(
    pytester: pytest.Pytester, colour: ColourServer
) -> None:
    project(pytester)
    colour.colour = "blue"
    result = standalone(pytester, "http", colour.url)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*{colour.url}: 3 of 3 critical paths do not answer as expected from colour green, "
            "release r2 (settings critical_paths, expected_status): "
            "/: answered by colour 'blue', expected green; /admin/: answered by colour 'blue'*"
        ]
    )


def test_the_http_gate_fails_on_a_missing_colour_header(
    pytester: pytest.Pytester, colour: ColourServer
) -> None:
    project(pytester)
    colour.colour = None
    result = standalone(pytester, "http", colour.url)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*/: answered by colour None, expected green;*"])


def test_the_http_gate_fails_on_a_wrong_status(
    pytester: pytest.Pytester, colour: ColourServer
) -> None:
    project(pytester)
    colour.statuses["/api"] = 500
    colour.statuses["/admin/"] = 200
    result = standalone(pytester, "http", colour.url)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*2 of 3 critical paths*: /admin/: HTTP 200, expected 302; /api: HTTP 500, expected 200"]
    )


def test_the_postdeploy_gate_on_its_own(pytester: pytest.Pytester, colour: ColourServer) -> None:
    project(pytester)
    result = standalone(pytester, "bluegreen:postdeploy", colour.url)
    result.assert_outcomes(passed=2)


def test_the_postdeploy_gate_fails_a_slow_path(
    pytester: pytest.Pytester, colour: ColourServer
) -> None:
    project(pytester, extra="latency_p99_budget_ms = 0.001")
    result = standalone(pytester, "postdeploy", colour.url)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*critical paths slow or failing (median of 5 requests each, budget 0 ms: setting "
            "latency_p99_budget_ms): /: median * ms (each: *, *, *, *, *); /admin/: median*"
        ]
    )


def test_the_postdeploy_gate_needs_no_settings(
    pytester: pytest.Pytester, colour: ColourServer
) -> None:
    """As ``pytest suites/postdeploy --bg-target URL`` did: "/" and the default budget."""
    result = pytester.runpytest(
        "--bg-suite", "postdeploy", "--bg-target", colour.url + "/", *NO_REWRITE_WARNING
    )
    result.assert_outcomes(passed=2)
    colour.statuses["/"] = 503
    result = pytester.runpytest(
        "--bg-suite", "postdeploy", "--bg-target", colour.url, *NO_REWRITE_WARNING
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*1 of 1 critical paths*: /: HTTP 503, expected 200"])


def test_the_postdeploy_gate_spreads_over_xdist_workers(
    pytester: pytest.Pytester, colour: ColourServer
) -> None:
    project(pytester)
    result = standalone(pytester, "postdeploy", colour.url, "-n", "2")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["2 workers [2 items]"])


def test_bg_suite_is_not_for_a_deploy(pytester: pytest.Pytester) -> None:
    project(pytester)
    result = pytester.runpytest("--bg-deploy", "--bg-release", "r2", "--bg-suite", "http")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--bg-suite runs a suite on its own; a deploy runs*"])


# -- in a deploy session -----------------------------------------------------------------------

STAND_IN_DEPLOYMENT = """
from pathlib import Path

import pytest

from pytest_bluegreen.core.record import DeployRecord
from pytest_bluegreen.session import load_settings
from pytest_bluegreen.session import TRACKER_KEY


class StandInDeployment:
    \"\"\"The built-in stages as no-ops, blue live, green at r2: the suites run for real.\"\"\"

    switched = False
    concluded = False
    from_colour = "blue"
    to_colour = "green"
    release = "r2"
    secrets = ()

    def __init__(self, config):
        self.config = config
        self.record = DeployRecord(id="20261202T000000Z-000000", release="r2",
                                   from_colour="blue", to_colour="green")

    def stage_done(self, name, outcome, duration_s, message=""):
        pass

    def prerequisites(self):
        pass

    colours = backup = build = bring_up = bake = retire = prerequisites

    def switch(self, gates_passed):
        Path("gates_passed").write_text(str(gates_passed))
        self.switched = True

    def conclude(self, failed_stage, error, verdict_at):
        self.concluded = True
        self.record.finish("deployed" if failed_stage is None else "aborted", error=error)


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    tracker = config.stash.get(TRACKER_KEY, None)
    if tracker is not None:
        settings = load_settings(config)
        tracker.make_deployment = lambda: StandInDeployment(settings)
"""


def deploy(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """In a subprocess: a deploy session installs a SIGTERM handler."""
    return pytester.runpytest_subprocess(
        "--bg-deploy", "--bg-release", "r2", "-p", "no:html", "-p", "no:cacheprovider", *args
    )


def test_packaged_gates_run_in_their_stages_and_count_as_gates(
    pytester: pytest.Pytester, colour: ColourServer
) -> None:
    project(pytester, colour.server_address[1])
    pytester.makeconftest(STAND_IN_DEPLOYMENT)
    result = deploy(pytester, "-v")
    result.stdout.fnmatch_lines(
        [
            "== stage 6/11: bring_up",
            "*::test_bring_up PASSED*",
            "== stage 7/11: gates",
            "test_http.py::test_critical_paths_answer_from_the_new_release PASSED*",
            "== stage 8/11: switch",
            "*::test_switch PASSED*",
            "== stage 9/11: verify",
            "test_postdeploy.py::test_critical_paths_serve_the_new_release PASSED*",
            "test_postdeploy.py::test_critical_paths_answer_within_budget PASSED*",
            "== stage 10/11: bake",
            "== deploy 20261202T000000Z-000000: deployed (blue -> green, release r2)",
        ]
    )
    assert (pytester.path / "gates_passed").read_text() == "1"
    assert result.ret == 0


def test_a_failed_packaged_gate_stops_the_deploy(
    pytester: pytest.Pytester, colour: ColourServer
) -> None:
    project(pytester, colour.server_address[1])
    pytester.makeconftest(STAND_IN_DEPLOYMENT)
    colour.release = "r1"
    result = deploy(pytester)
    result.stdout.fnmatch_lines(
        ["!! stage gates failed: *test_http.py::*: /: answered by release 'r1', expected r2;*"]
    )
    assert not (pytester.path / "gates_passed").exists()
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_packaged_and_project_suites_together_whatever_python_files_says(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, gates=("bluegreen:http", "bluegreen:latency", "suites/smoke"))
    pytester.makeini("[pytest]\npython_files = check_*.py\n")
    pytester.mkdir("suites")
    pytester.mkdir("suites/smoke")
    (pytester.path / "suites" / "smoke" / "check_smoke.py").write_text("def test_own(): pass\n")
    result = deploy(pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "*::test_bring_up",
            "test_http.py::test_critical_paths_answer_from_the_new_release",
            "test_latency.py::test_no_errors",
            "test_latency.py::test_new_colour_within_budget",
            "test_latency.py::test_no_regression_against_live_colour",
            "suites/smoke/check_smoke.py::test_own",
            "*::test_switch",
            "test_postdeploy.py::test_critical_paths_serve_the_new_release",
            "test_postdeploy.py::test_critical_paths_answer_within_budget",
            "*::test_bake",
        ]
    )
    assert result.ret == 0


def test_an_unknown_gate_in_the_settings_stops_the_deploy_at_once(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, gates=("bluegreen:http", "bluegreen:smoke"))
    result = deploy(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*bluegreen: unknown packaged suite 'bluegreen:smoke'; known: bluegreen:hardening, *"]
    )
