"""The scenario library: broken releases and faults, each with the outcome a user must get.

A scenario is a release (a Compose override of the idle colour's backend), settings, and/or an
action run when a line appears in the deploy's output, plus what must come of it. What every
scenario must also show (users served, data whole, nothing left behind, the lock free) is
checked for all of them in ``test_scenarios.py``.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from pytest_bluegreen.stage_tracker import STAGES
from scenarios.harness import Deploy, ScenarioHost

Action = Callable[[ScenarioHost, Deploy], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str  # what goes wrong, in one line
    result: tuple[str, ...]  # acceptable results: deployed, aborted, rolled_back, usage_error
    failed_stage: str | None = None
    message: str = ""  # must appear in the deploy's output
    release_yaml: str = ""  # the idle colour's backend, as Compose YAML lines
    settings: str = ""  # extra lines for the settings file
    at: str = ""  # a line of the deploy's output that runs ``action``
    action: Action | None = None
    prepare: Callable[[ScenarioHost], None] | None = None
    cleanup: Callable[[ScenarioHost], None] | None = None
    users_may_fail: bool = False  # True only when the fault itself takes users down
    repaired_by_next_run: bool = False  # a killed deploy: the next deploy must repair it


def stage_line(stage: str) -> str:
    """The line a deploy prints when ``stage`` begins."""
    return f"== stage {STAGES.index(stage) + 1}/{len(STAGES)}: {stage}"


def _env(**variables: str) -> str:
    return "    environment:\n" + "".join(f"      {k}: {v!r}\n" for k, v in variables.items())


def _signal(signum: int) -> Action:
    def send(host: ScenarioHost, deploy: Deploy) -> None:
        deploy.proc.send_signal(signum)

    return send


def _docker(*args: str) -> Callable[..., None]:
    def run(host: ScenarioHost, *_: object) -> None:
        (container,) = host.stack.container_ids(args[-1])
        subprocess.run(["docker", *args[:-1], container], check=True, timeout=120)

    return run


def _broken_build(host: ScenarioHost) -> None:
    folder = host.home / "broken-build"
    folder.mkdir(exist_ok=True)
    (folder / "Dockerfile").write_text(
        "ARG BASE_IMAGE=debian:bookworm-slim\nFROM ${BASE_IMAGE}\n"
        "RUN echo 'aptos/views.py: SyntaxError: invalid syntax' >&2 && exit 1\n"
    )


def _second_deploy(host: ScenarioHost, deploy: Deploy) -> None:
    """While the first deploy runs, a second one: it must be refused, the first unharmed."""
    second = host.start_deploy("scn-second")
    second.start_reading([])
    host.notes["second"] = second.wait(timeout_s=120)
    host.notes["second_rc"] = str(second.proc.returncode)


def _restart_database(host: ScenarioHost) -> None:
    host.stack.start([host.config.database.service])


def _full_disk(host: ScenarioHost) -> None:
    folder = host.home / "full"
    folder.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(folder)], check=True)


def _unmount(host: ScenarioHost) -> None:
    subprocess.run(["umount", str(host.home / "full")], check=False)


LIBRARY: tuple[Scenario, ...] = (
    Scenario(
        "never-healthy",
        "the release's healthcheck never passes",
        ("aborted",),
        "bring_up",
        "backend-{idle} is unhealthy",
        '    healthcheck:\n      test: ["CMD", "false"]\n      interval: 1s\n'
        "      retries: 2\n      start_period: 0s\n",
    ),
    Scenario(
        "api-errors",
        "healthy, but every API request answers 500",
        ("aborted",),
        "gates",
        "HTTP 502",
        _env(APTOS_FAULT="api-errors"),
    ),
    Scenario(
        "slow",
        "healthy, but every API request takes 300 ms more",
        ("aborted",),
        "gates",
        "over the latency budget",
        _env(APTOS_FAULT="slow:300"),
        settings="latency_rounds = 5",  # 300 ms a request: a few rounds show it
    ),
    Scenario(
        "errors-under-load",
        "errors only when requests overlap (concurrent users)",
        ("rolled_back",),
        "switch",
        "requests failed (budget 0)",
        _env(APTOS_FAULT="busy-errors"),
        users_may_fail=True,  # the broken colour served the users for the switch window
    ),
    Scenario(
        "crashes-after-switch",
        "the release serves, then dies 15 s after its first user request",
        ("rolled_back",),
        "bake",
        "failed while baking",
        _env(APTOS_FAULT="crash-after:15"),
        # The crash must land in the bake, after the switch's window and verify, whose length
        # varies with the machine's load (1-8 s): a long bake, the crash well inside it.
        settings="bake_s = 25",
        users_may_fail=True,  # until the bake sees it die, users reach the dying colour
    ),
    Scenario(
        "migration-breaks-live",
        "a migration drops a column the live colour reads",
        ("aborted",),
        "migration",
        "column aptos_builder.founded_year does not exist",
        _env(APTOS_MIGRATIONS="drop-column"),
    ),
    Scenario(
        "build-fails",
        "the release's image does not build",
        ("aborted",),
        "build",
        "SyntaxError: invalid syntax",
        "    build:\n      context: {home}/broken-build\n",
        prepare=_broken_build,
    ),
    Scenario(
        "database-stops",
        "the database stops while the gates run",
        ("aborted",),
        "gates",
        "stage gates failed",
        at=stage_line("gates"),
        action=_docker("stop", "db"),
        cleanup=_restart_database,
        users_may_fail=True,  # no colour can serve without its database
    ),
    Scenario(
        "haproxy-restarts",
        "HAProxy restarts while the gates run",
        ("aborted", "deployed"),
        at=stage_line("gates"),
        action=_docker("restart", "loadbalancer"),
        users_may_fail=True,  # a restart closes every connection it holds
    ),
    Scenario(
        "sigterm-in-switch",
        "the deploy process gets SIGTERM right after its switch",
        ("rolled_back",),
        "switch",
        "!! stage switch interrupted (SIGINT or SIGTERM)",
        at="switched ",
        action=_signal(signal.SIGTERM),
    ),
    Scenario(
        "sigkill-in-switch",
        "the deploy process is SIGKILLed right after its switch; the next run repairs",
        ("interrupted",),
        at="switched ",
        action=_signal(signal.SIGKILL),
        repaired_by_next_run=True,
    ),
    Scenario(
        "two-at-once",
        "a second deploy starts while one runs",
        ("deployed",),
        at=stage_line("migration"),
        action=_second_deploy,
    ),
    Scenario(
        "full-disk",
        "no space left for the backup",
        ("aborted",),
        "backup",
        "not enough space for the backup",
        settings='backup_dir = "{home}/full"',
        prepare=_full_disk,
        cleanup=_unmount,
    ),
    Scenario(
        "bad-settings",
        "a settings file with a wrong value",
        ("usage_error",),
        message="bluegreen.load.users must be",
        settings="[load]\nusers = -1",
    ),
)
