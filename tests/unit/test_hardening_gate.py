"""The packaged hardening gate: each check a gate, a warning or off, on a stand-in container."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from pytest_bluegreen.reporting.secrets import is_secret_name
from tests.unit.colour_server import NO_REWRITE_WARNING, project

FAKE_HOST = """
import json
import subprocess

import pytest

from pytest_bluegreen.checks import hardening
from pytest_bluegreen.gates.container_facts import Container


class Result:
    def __init__(self, stdout, rc=0, stderr=""):
        self.stdout, self.rc, self.stderr = stdout, rc, stderr


class Backend:
    name = "c0ffee"

    def run_local(self, command, *args):
        return Result(json.dumps([{"HostConfig": {"Memory": 0, "PidsLimit": 0}}]))


class Host:
    \"\"\"A container whose app runs as root with no limits.\"\"\"

    backend = Backend()
    outputs = {
        hardening.PROCESS_COMMAND: "7\\n/proc/1/status:Name:\\tgunicorn\\n"
        "/proc/1/status:Uid:\\t0\\t0\\t0\\t0\\n/proc/8/status:Name:\\tworker\\n"
        "/proc/8/status:Uid:\\t10001\\t10001\\t10001\\t10001\\n",
        hardening.CGROUP_COMMAND: "/sys/fs/cgroup/memory.max=max\\n/sys/fs/cgroup/pids.max=max\\n"
        "/sys/fs/cgroup/cpu.max=max 100000\\n",
    }

    def run(self, command):
        return Result(self.outputs[command])


def scan(self, command, stdin, timeout):
    \"\"\"grep -o -Z's answer: the long secret (it came in on stdin) in one file.\"\"\"
    assert command == hardening.SCAN_COMMAND
    secret = "long-enough-to-search"
    assert stdin == secret + "\\n"
    return subprocess.CompletedProcess(command, 0, f"/app/settings.py\\0{secret}\\n", "")


Container.run_with_input = scan


@pytest.fixture(scope="session")
def bluegreen_host():
    return lambda name: Host()
"""


@pytest.fixture
def hardening(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], pytest.RunResult]:
    """A run of the hardening gate with these modes; the only secrets those of the stack's .env."""
    for name in list(os.environ):
        if is_secret_name(name):
            monkeypatch.delenv(name)
    return lambda modes: run_hardening(pytester, modes)


def run_hardening(pytester: pytest.Pytester, modes: str) -> pytest.RunResult:
    project(pytester, extra=f"hardening = {{{modes}}}")
    (pytester.path / ".env").write_text("APP_SECRET_KEY=long-enough-to-search\nDB_PASSWORD=short\n")
    pytester.makeconftest(FAKE_HOST)
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    return pytester.runpytest(
        "--bg-suite", "hardening", "--bg-expect-colour", "green", "-rA", *NO_REWRITE_WARNING
    )


def test_hardening_gate_fails_and_warn_passes_with_a_warning(
    hardening: Callable[[str], pytest.RunResult],
) -> None:
    result = hardening('non_root = "gate", limits = "warn", secret_files = "off"')
    result.assert_outcomes(passed=1, failed=1, skipped=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_no_process_runs_as_root _*",
            "hardening.non_root: web-green: process gunicorn (pid 1) runs as root (uid 0); run it "
            "as an unprivileged user*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*BluegreenWarning: hardening.limits: web-green: no memory limit in Docker: set "
            "mem_limit in the Compose file; web-green: no pids limit*; web-green: no cpus limit "
            "in Docker: set cpus in the Compose file (a warning: hardening.limits = 'warn')",
        ]
    )
    result.stdout.fnmatch_lines(
        ["SKIPPED *not applicable: hardening.secret_files is off in the settings"]
    )


def test_hardening_warn_and_gate_the_other_way_round(
    hardening: Callable[[str], pytest.RunResult],
) -> None:
    result = hardening('non_root = "warn", limits = "gate", secret_files = "off"')
    result.assert_outcomes(passed=1, failed=1, skipped=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*_ test_resource_limits_are_applied _*", "hardening.limits: web-green: no memory limit*"]
    )
    result.stdout.fnmatch_lines(["*BluegreenWarning: hardening.non_root: web-green: process*"])


def test_hardening_finds_a_secret_in_a_file(hardening: Callable[[str], pytest.RunResult]) -> None:
    result = hardening('non_root = "off", limits = "off"')  # secret_files: the default
    result.assert_outcomes(failed=1, skipped=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_no_secret_in_readable_files _*",
            "hardening.secret_files: web-green: /app/settings.py holds APP_SECRET_KEY; secrets "
            "belong in the container's environment (or /run/secrets) only*",
            "*BluegreenWarning: not looked for in files, under 8 characters: DB_PASSWORD; use*",
        ]
    )


def test_on_an_engine_whose_containers_are_elsewhere_the_gate_does_not_apply(
    pytester: pytest.Pytester,
) -> None:
    """A swarm's tasks run on other nodes: no container is looked for (none is reachable)."""
    project(pytester, extra='engine = "swarm"')
    pytester.makeconftest(
        "import pytest\n\n"
        "@pytest.fixture(scope='session')\n"
        "def bluegreen_host():\n"
        "    raise AssertionError('no container host is opened on a swarm')\n"
    )
    result = pytester.runpytest(
        "--bg-suite", "hardening", "--bg-expect-colour", "green", "-rA", *NO_REWRITE_WARNING
    )
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(
        ["SKIPPED *not applicable: on the swarm engine: the containers are not on the engine*"]
    )
