"""Hardening: inside the colour's containers, what the Compose file promises is real.

A gate of the deploy (``bluegreen:hardening``), run with testinfra (``docker exec``) in every
routed service of the colour under test (``colour_services``): no process runs as root
(``non_root``), the kernel applies the memory, CPU and PID limits Docker reports (``limits``),
and no secret of the stack's environment sits in a file the app can read (``secret_files``).
The settings make each check a gate, a warning or nothing::

    hardening = {non_root = "gate", limits = "warn", secret_files = "gate"}   # the defaults
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pytest_bluegreen import (
    Colour,
    CommandFailed,
    Container,
    StackConfig,
    is_secret_name,
    not_applicable,
)
from pytest_bluegreen.checks import hardening as checks
from pytest_bluegreen.gates._assertions import (
    hardening_mode,
    judge_hardening,
    require_containers_here,
    warn,
)

# Shorter secrets are not looked for: they match by chance in any file (and are weak anyway).
SEARCHABLE_SECRET = 8
SHORT_SECRET = 12


@pytest.fixture(scope="module")
def containers(
    request: pytest.FixtureRequest,
    bluegreen_config: StackConfig,
    bluegreen_colour: Colour | None,
) -> list[Container]:
    """The running container of each routed service of the colour under test."""
    if bluegreen_colour is None:
        not_applicable("no colour under test: nothing deploys and none is recorded live")
    require_containers_here(bluegreen_config)
    bluegreen_host: Callable[[str], Any] = request.getfixturevalue("bluegreen_host")
    services = bluegreen_config.services.services_of(bluegreen_colour)
    return [Container(service, service, bluegreen_host(service)) for service in services]


def test_no_process_runs_as_root(
    request: pytest.FixtureRequest, bluegreen_config: StackConfig
) -> None:
    mode = hardening_mode(bluegreen_config, "non_root")
    problems = []
    for container in request.getfixturevalue("containers"):
        try:
            processes = checks.parse_processes(container.read(checks.PROCESS_COMMAND))
        except CommandFailed as exc:
            problems.append(str(exc))
            continue
        if not processes:
            problems.append(f"{container.service}: found no process in /proc")
        problems += [
            f"{container.service}: process {p.name} (pid {p.pid}) runs as root ({p.uid_text})"
            for p in processes
            if p.is_root
        ]
    judge_hardening(
        request.config,
        "non_root",
        mode,
        problems,
        "run it as an unprivileged user (USER in the Dockerfile or user: in Compose)",
    )


def test_resource_limits_are_applied(
    request: pytest.FixtureRequest, bluegreen_config: StackConfig
) -> None:
    mode = hardening_mode(bluegreen_config, "limits")
    problems = []
    for container in request.getfixturevalue("containers"):
        try:
            files = checks.parse_cgroup_files(container.read(checks.CGROUP_COMMAND))
            docker = checks.docker_limits(container.read_host_config())
        except CommandFailed as exc:
            problems.append(str(exc))
            continue
        if not files:
            problems.append(f"{container.service}: no cgroup limit file under /sys/fs/cgroup")
            continue
        found = checks.limit_problems(checks.cgroup_limits(files), docker)
        problems += [f"{container.service}: {problem}" for problem in found]
    judge_hardening(request.config, "limits", mode, problems, advice="")


def test_no_secret_in_readable_files(
    request: pytest.FixtureRequest, bluegreen_config: StackConfig
) -> None:
    mode = hardening_mode(bluegreen_config, "secret_files")
    secrets = {
        name: value
        for name, value in bluegreen_config.environment.items()
        if is_secret_name(name, bluegreen_config.reporting.secret_names) and value.strip()
    }
    short = sorted(name for name, value in secrets.items() if len(value) < SEARCHABLE_SECRET)
    if short:
        warn(
            request.config,
            f"not looked for in files, under {SEARCHABLE_SECRET} characters: {', '.join(short)}; "
            "use long random secrets",
        )
    secrets = {name: value for name, value in secrets.items() if name not in short}
    if not secrets:
        not_applicable("no secret in the stack's environment to look for (setting secret_names)")
    problems = []
    for container in request.getfixturevalue("containers"):
        problems += _secret_files(container, secrets)
    judge_hardening(
        request.config,
        "secret_files",
        mode,
        problems,
        "secrets belong in the container's environment (or /run/secrets) only: remove the "
        "files from the image or the mounts and rotate the secrets",
    )


def _secret_files(container: Container, secrets: dict[str, str]) -> list[str]:
    """Where ``container``'s files hold a secret; the secrets go in on stdin, never on a line."""
    scan = container.run_with_input(
        checks.SCAN_COMMAND,
        "".join(f"{value}\n" for value in secrets.values()),
        timeout=checks.SCAN_TIMEOUT_S + 30,
    )
    error = checks.scan_error(scan.returncode, scan.stderr)
    if error is not None:
        return [f"{container.service}: cannot tell whether files hold secrets: {error}"]
    return [
        f"{container.service}: {path} holds {', '.join(sorted(keys))}"
        + "".join(
            f" ({key} is only {len(secrets[key])} characters: maybe a chance match)"
            for key in sorted(keys)
            if len(secrets[key]) < SHORT_SECRET
        )
        for path, keys in sorted(checks.secret_files(scan.stdout, secrets).items())
    ]
