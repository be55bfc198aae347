"""The infra suite's parsing and judging, on captured container output (no Docker)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pytest_bluegreen.checks import hardening as checks
from pytest_bluegreen.checks.hardening import Limits, Listener, Process

# --- processes ------------------------------------------------------------------------------

PROCESSES = """\
148
/proc/1/status:Name:\tgunicorn
/proc/1/status:Uid:\t10001\t10001\t10001\t10001
/proc/8/status:Name:\tgunicorn
/proc/8/status:Uid:\t0\t0\t0\t0
/proc/148/status:Name:\tgrep
/proc/148/status:Uid:\t10001\t10001\t10001\t10001
/proc/150/status:Name:\tpython3
/proc/150/status:Uid:\t10001\t0\t10001\t0
/proc/151/status:Name:\trunc:[2:INIT]
/proc/151/status:Uid:\t0\t0\t0\t0
"""


def test_processes_leave_out_the_probe_and_the_runtime_starting_an_exec() -> None:
    assert checks.parse_processes(PROCESSES) == [
        Process(1, "gunicorn", (10001, 10001, 10001, 10001)),
        Process(8, "gunicorn", (0, 0, 0, 0)),
        Process(150, "python3", (10001, 0, 10001, 0)),
    ]


def test_any_root_uid_makes_a_root_process() -> None:
    root = [p.pid for p in checks.parse_processes(PROCESSES) if p.is_root]
    assert root == [8, 150]  # 150: real uid 10001 but effective uid 0


def test_uid_text() -> None:
    assert Process(1, "gunicorn", (0, 0, 0, 0)).uid_text == "uid 0"
    assert Process(2, "python3", (10001, 0, 10001, 0)).uid_text == (
        "uids 10001/0/10001/0 (real/effective/saved/filesystem)"
    )


def test_process_that_exited_between_name_and_uid_is_left_out() -> None:
    assert checks.parse_processes("1\n/proc/7/status:Name:\tsh\n") == []


def test_process_command_runs_here_and_finds_this_process() -> None:
    output = subprocess.run(
        ["/bin/sh", "-c", checks.PROCESS_COMMAND], capture_output=True, text=True, check=True
    ).stdout
    probe = int(output.splitlines()[0])
    pids = {p.pid for p in checks.parse_processes(output)}
    assert os.getpid() in pids
    assert probe not in pids


# --- listening sockets ----------------------------------------------------------------------

HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode"
)
TCP = f"""\
{HEADER}
   0: 0B00007F:9D2D 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3402560 1 00000000a7b0dcc4 100 0 0 10 0
   1: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000 10001        0 3403940 1 00000000ccfc2704 100 0 0 10 0
   2: 0100007F:9BDA 0100007F:1F40 06 00000000:00000000 03:000010B4 00000000     0        0 0 3 000000009aa54baa
   3: 030013AC:1F40 040013AC:9DB8 01 00000000:00000000 03:0000151D 00000000     0        0 0 3 00000000f33299f6
"""  # noqa: E501
TCP6 = """\
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 0 0
   1: 00000000000000000000000001000000:162E 00000000000000000000000000000000:0000 0A 0 0
"""


def test_listeners_of_tcp_and_tcp6() -> None:
    assert checks.parse_listeners(TCP + TCP6) == {
        Listener("127.0.0.11", 40237),
        Listener("0.0.0.0", 8000),
        Listener("::", 3000),
        Listener("::1", 5678),
    }


def test_listener_address_forms() -> None:
    assert Listener("0.0.0.0", 8000).all_interfaces
    assert Listener("::", 8000).all_interfaces
    assert not Listener("127.0.0.1", 8000).all_interfaces
    assert str(Listener("::1", 5678)) == "[::1]:5678"
    assert str(Listener("0.0.0.0", 8000)) == "0.0.0.0:8000"


def test_docker_dns_and_own_port_are_expected() -> None:
    assert checks.unexpected_listeners(checks.parse_listeners(TCP), 8000) == []


def test_a_debug_port_is_unexpected() -> None:
    listeners = checks.parse_listeners(TCP + TCP6)
    assert checks.unexpected_listeners(listeners, 3000) == [
        Listener("0.0.0.0", 8000),
        Listener("::1", 5678),
    ]


# --- resource limits ------------------------------------------------------------------------

V1 = """\
/sys/fs/cgroup/memory/memory.limit_in_bytes=536870912
/sys/fs/cgroup/pids/pids.max=256
/sys/fs/cgroup/cpu/cpu.cfs_quota_us=100000
/sys/fs/cgroup/cpu/cpu.cfs_period_us=100000
"""
V2 = """\
/sys/fs/cgroup/memory.max=536870912
/sys/fs/cgroup/pids.max=256
/sys/fs/cgroup/cpu.max=50000 100000
"""
COMPOSE_LIMITS = {"Memory": 536870912, "PidsLimit": 256, "NanoCpus": 1_000_000_000}


def test_cgroup_v1_limits() -> None:
    files = checks.parse_cgroup_files(V1)
    assert checks.cgroup_limits(files) == Limits(536870912, 256, 1.0)


def test_cgroup_v2_limits() -> None:
    assert checks.cgroup_limits(checks.parse_cgroup_files(V2)) == Limits(536870912, 256, 0.5)


def test_cgroup_v2_unlimited() -> None:
    files = {
        "/sys/fs/cgroup/memory.max": "max",
        "/sys/fs/cgroup/pids.max": "max",
        "/sys/fs/cgroup/cpu.max": "max 100000",
    }
    assert checks.cgroup_limits(files) == Limits(None, None, None)


def test_cgroup_v1_unlimited() -> None:
    files = {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712",
        "/sys/fs/cgroup/pids/pids.max": "max",
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1",
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000",
    }
    assert checks.cgroup_limits(files) == Limits(None, None, None)


def test_cgroup_v1_cpu_in_the_joint_hierarchy() -> None:
    files = {
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "150000",
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000",
    }
    assert checks.cgroup_limits(files).cpus == 1.5


def test_cgroup_command_output_parses() -> None:
    # The command runs anywhere: here it reads whatever this machine has, in the same form.
    output = subprocess.run(
        ["/bin/sh", "-c", checks.CGROUP_COMMAND], capture_output=True, text=True, check=True
    ).stdout
    assert set(checks.parse_cgroup_files(output)) <= set(checks.CGROUP_FILES)


@pytest.mark.parametrize(
    ("host_config", "limits"),
    [
        (COMPOSE_LIMITS, Limits(536870912, 256, 1.0)),
        ({"Memory": 0, "PidsLimit": None, "NanoCpus": 0}, Limits(None, None, None)),
        ({"Memory": 0, "PidsLimit": -1, "NanoCpus": 0, "CpuQuota": 50000}, Limits(None, None, 0.5)),
        ({"CpuQuota": 200000, "CpuPeriod": 100000}, Limits(None, None, 2.0)),
    ],
)
def test_docker_limits(host_config: dict[str, int | None], limits: Limits) -> None:
    assert checks.docker_limits(host_config) == limits


def test_limits_as_docker_reports_them_pass() -> None:
    inside = checks.cgroup_limits(checks.parse_cgroup_files(V1))
    assert checks.limit_problems(inside, checks.docker_limits(COMPOSE_LIMITS)) == []


def test_memory_rounded_down_to_a_page_is_the_same() -> None:
    inside = Limits(536870912 - 4096 + 1, 256, 1.0)
    assert checks.limit_problems(inside, Limits(536870912, 256, 1.0)) == []


def test_limits_missing_in_docker_name_the_compose_key() -> None:
    problems = checks.limit_problems(Limits(None, None, None), Limits(None, None, None))
    assert problems == [
        "no memory limit in Docker: set mem_limit in the Compose file",
        "no pids limit in Docker: set pids_limit in the Compose file",
        "no cpus limit in Docker: set cpus in the Compose file",
    ]


def test_limits_the_kernel_does_not_apply() -> None:
    problems = checks.limit_problems(Limits(None, 256, 2.0), Limits(536870912, 256, 1.0))
    assert problems == [
        "Docker reports a memory limit of 512 MiB, but the container's cgroup has none",
        "the container's cgroup limits cpus to 2 CPUs, Docker reports 1 CPUs",
    ]


# --- read-only root filesystem --------------------------------------------------------------

MOUNTS = """\
overlay / overlay ro,relatime,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /tmp tmpfs rw,nosuid,nodev,noexec,relatime 0 0
write / EROFS
write /app EROFS
"""


def test_root_mount_options() -> None:
    assert "ro" in checks.root_mount_options(MOUNTS)
    assert "ro" not in checks.root_mount_options(MOUNTS.replace(" ro,", " rw,"))
    assert checks.root_mount_options("proc /proc proc rw 0 0\n") == set()


def test_write_probe() -> None:
    assert checks.parse_write_probe(MOUNTS) == {"/": "EROFS", "/app": "EROFS"}
    assert checks.parse_write_probe("write /app ok\nwrite / EACCES\n") == {
        "/app": "ok",
        "/": "EACCES",
    }


# --- secrets in files -----------------------------------------------------------------------

SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret-0123456789",
    "DJANGO_SECRET_KEY": "django-secret-key-" + "x" * 40,
    "STATS_PASSWORD": "stats-secret-abcdef",
}


def test_secrets_to_find_skip_empty_and_other_keys() -> None:
    env = {"POSTGRES_PASSWORD": "p" * 20, "STATS_PASSWORD": "", "POSTGRES_USER": "aptos"}
    assert checks.secrets_to_find(env) == {"POSTGRES_PASSWORD": "p" * 20}


def test_secret_files_name_keys_not_values() -> None:
    output = (
        "/app/settings_local.py\0pg-secret-0123456789\n"
        "/app/settings_local.py\0stats-secret-abcdef\n"
        "/tmp/dump\0django-secret-key-" + "x" * 40 + "\n"
        "/run/secrets/db_password\0pg-secret-0123456789\n"
        "grep: /etc/shadow: Permission denied\n"
    )
    assert checks.secret_files(output, SECRETS) == {
        "/app/settings_local.py": {"POSTGRES_PASSWORD", "STATS_PASSWORD"},
        "/tmp/dump": {"DJANGO_SECRET_KEY"},
    }


def test_scan_grep_and_parser_agree(tmp_path: Path) -> None:
    """The grep of the scan, on a directory here: text and binary files, one secret each."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "settings.py").write_text(f"PASSWORD = '{SECRETS['STATS_PASSWORD']}'\n")
    (tmp_path / "cache.pyc").write_bytes(
        b"\x00\x01\xff" + SECRETS["POSTGRES_PASSWORD"].encode() + b"\x00\n\x02"
    )
    (tmp_path / "clean.txt").write_text("nothing to see\n")
    scan = subprocess.run(
        ["/bin/sh", "-c", f"{checks.SCAN_GREP} {tmp_path}"],
        input="".join(f"{value}\n" for value in SECRETS.values()),
        capture_output=True,
        text=True,
        check=False,
    )
    assert checks.scan_error(scan.returncode, scan.stderr) is None
    assert checks.secret_files(scan.stdout, SECRETS) == {
        f"{tmp_path}/app/settings.py": {"STATS_PASSWORD"},
        f"{tmp_path}/cache.pyc": {"POSTGRES_PASSWORD"},
    }


@pytest.mark.parametrize(
    ("status", "stderr", "error"),
    [
        (0, "", None),
        (1, "", None),
        (2, "grep: /etc/shadow: Permission denied\ngrep: /tmp/x: No such file or directory", None),
        (124, "", "the scan did not finish within 60 s"),
        (2, "grep: invalid option -- 'Z'\n", "the scan failed (exit status 2): grep: invalid"),
        (126, "sh: nice: not found\n", "the scan failed (exit status 126): sh: nice: not found"),
    ],
)
def test_scan_error(status: int, stderr: str, error: str | None) -> None:
    found = checks.scan_error(status, stderr)
    if error is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(error)
