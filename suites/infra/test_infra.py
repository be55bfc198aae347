"""Infra: inside the colour's containers, the hardening the Compose file promises is real.

A gate of the deploy, run with testinfra's Docker backend (``docker exec``) in the backend and
frontend of the colour under test: no process runs as root, the app listens only where HAProxy
expects it, Django's DEBUG is off, the kernel applies the resource limits Docker reports, the root
filesystem is read-only, and no secret of the stack sits in a file the app can read.
"""

from __future__ import annotations

import pytest

from pytest_bluegreen import StackConfig
from pytest_bluegreen.checks import hardening as checks
from suites.infra.conftest import ROLES, Container

# Where HAProxy sends each role's traffic (haproxy/haproxy.cfg), as gunicorn binds it.
PORTS = {"backend": 8000, "frontend": 3000}
SHORT_SECRET = 12

roles = pytest.mark.parametrize("container", ROLES, indirect=True)


@roles
def test_no_process_runs_as_root(container: Container) -> None:
    processes = checks.parse_processes(container.output(checks.PROCESS_COMMAND))
    assert processes, f"{container.service}: found no process in /proc"
    root = [process for process in processes if process.is_root]
    assert not root, (
        f"{container.service}: "
        + "; ".join(f"process {p.name} (pid {p.pid}) runs as root ({p.uid_text})" for p in root)
        + "; run it as an unprivileged user (USER in the Dockerfile or user: in Compose)"
    )


@roles
def test_listens_on_its_port_on_all_interfaces(container: Container) -> None:
    port = PORTS[container.role]
    listeners = checks.parse_listeners(container.output(checks.LISTEN_COMMAND))
    on_port = sorted(listener for listener in listeners if listener.port == port)
    assert on_port, (
        f"{container.service}: nothing listens on TCP {port}, where HAProxy sends its traffic "
        f"(listening: {', '.join(map(str, sorted(listeners))) or 'nothing'}); "
        f"check gunicorn's bind in app/{container.role}/gunicorn.conf.py"
    )
    assert any(listener.all_interfaces for listener in on_port), (
        f"{container.service}: TCP {port} listens only on {', '.join(map(str, on_port))}, "
        f"so HAProxy cannot reach it; bind 0.0.0.0:{port}"
    )


@roles
def test_listens_on_nothing_else(container: Container) -> None:
    port = PORTS[container.role]
    listeners = checks.parse_listeners(container.output(checks.LISTEN_COMMAND))
    others = checks.unexpected_listeners(listeners, port)
    assert not others, (
        f"{container.service}: listens on {', '.join(map(str, others))} besides TCP {port}; "
        "a debug or admin port must not ship: remove whatever opens it"
    )


# Django's own settings object, evaluated from the module and environment the app runs with
# (without django.setup(): loading every app would cost 0.7 s and cannot change DEBUG).
DJANGO_DEBUG_COMMAND = (
    "cd /app && DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-aptos_site.settings} "
    "python3 -c 'from django.conf import settings; print(\"DEBUG=%r\" % (settings.DEBUG,))'"
)


@pytest.mark.parametrize("container", ["backend"], indirect=True)
def test_django_debug_is_off(container: Container) -> None:
    """The frontend is plain WSGI with no debug switch; the backend's Django has one."""
    output = container.output(DJANGO_DEBUG_COMMAND).strip().splitlines()
    debug = output[-1] if output else "(no output)"
    assert debug == "DEBUG=False", (
        f"{container.service}: Django runs with {debug}, which shows tracebacks and settings "
        "to anyone; unset DJANGO_DEBUG in the container's environment"
    )


@roles
def test_resource_limits_are_applied(container: Container) -> None:
    files = checks.parse_cgroup_files(container.output(checks.CGROUP_COMMAND))
    assert files, (
        f"{container.service}: no cgroup limit file readable under /sys/fs/cgroup "
        f"(looked for {', '.join(checks.CGROUP_FILES)})"
    )
    problems = checks.limit_problems(
        checks.cgroup_limits(files), checks.docker_limits(container.host_config())
    )
    assert not problems, f"{container.service}: " + "; ".join(problems)


@roles
def test_root_filesystem_is_read_only(container: Container) -> None:
    output = container.output(checks.ROOTFS_COMMAND)
    options = checks.root_mount_options(output)
    assert "ro" in options, (
        f"{container.service}: / is mounted "
        f"{'read-write' if 'rw' in options else 'without ro (or not found in /proc/mounts)'}; "
        "set read_only: true in the Compose file (and tmpfs for what must be written)"
    )
    probe = checks.parse_write_probe(output)
    for directory in checks.WRITE_PROBE_PATHS:
        result = probe.get(directory, "(no answer)")
        assert result != "ok", (
            f"{container.service}: the container's user could create a file in {directory}: "
            "a writable volume or tmpfs is mounted there; keep / and the code read-only"
        )
        assert result == "EROFS", (
            f"{container.service}: creating a file in {directory} failed with {result}, not EROFS "
            "(read-only file system): the filesystem there is writable and only file "
            "permissions stopped this user; set read_only: true in the Compose file"
        )


@roles
def test_no_secret_in_readable_files(container: Container, bluegreen_config: StackConfig) -> None:
    secrets = checks.secrets_to_find(bluegreen_config.environment)
    if not secrets:
        pytest.skip(f"none of {', '.join(checks.SECRET_KEYS)} is set in the stack's environment")
    # The secrets go in on stdin; the output holds them, so only file names and keys leave here.
    scan = container.run_with_input(
        checks.SCAN_COMMAND,
        "".join(f"{value}\n" for value in secrets.values()),
        timeout=checks.SCAN_TIMEOUT_S + 30,
    )
    error = checks.scan_error(scan.returncode, scan.stderr)
    assert error is None, f"{container.service}: cannot tell whether files hold secrets: {error}"
    found = checks.secret_files(scan.stdout, secrets)
    assert not found, "; ".join(
        f"{container.service}: {path} holds {', '.join(sorted(keys))}"
        + "".join(
            f" ({key} is only {len(secrets[key])} characters: maybe a chance match, "
            "but use a long random secret)"
            for key in sorted(keys)
            if len(secrets[key]) < SHORT_SECRET
        )
        for path, keys in sorted(found.items())
    ) + (
        "; secrets belong in the container's environment only: remove the files from the "
        "image or the mounts and rotate the secrets"
    )
