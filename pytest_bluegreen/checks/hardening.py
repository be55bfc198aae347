"""Container hardening: parsing and judging of /proc, cgroup files, docker inspect, grep output.

No Docker here: a suite (the reference stack's ``suites/infra``) runs the commands in the
container and hands their output to these functions, so each rule is unit-tested on its own
(tests/unit/test_infra_checks.py).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# --- processes ------------------------------------------------------------------------------

# Prints its own pid, so the probe can leave itself out (its grep started after the glob was
# expanded, so it is not listed). Exit 0: a process that ends between the glob and grep's read
# makes grep exit 2; the suite fails on an empty list instead.
PROCESS_COMMAND = "echo $$; grep -Hs -E '^(Name|Uid):' /proc/[0-9]*/status; exit 0"
_STATUS_LINE = re.compile(r"^/proc/(\d+)/status:(Name|Uid):\s*(.*)$")
# runc's init ("runc:[2:INIT]") runs as root for the few milliseconds it takes to start a
# `docker exec` or a health check in the container, before it becomes the command as its user.
RUNTIME_PREFIX = "runc:["


@dataclass(frozen=True)
class Process:
    pid: int
    name: str
    uids: tuple[int, ...]  # real, effective, saved, filesystem

    @property
    def is_root(self) -> bool:
        return 0 in self.uids

    @property
    def uid_text(self) -> str:
        """``uid 0``, or all four when they differ: ``uids 10001/0/10001/0``."""
        if len(set(self.uids)) == 1:
            return f"uid {self.uids[0]}"
        return f"uids {'/'.join(map(str, self.uids))} (real/effective/saved/filesystem)"


def parse_processes(output: str) -> list[Process]:
    """The processes of ``PROCESS_COMMAND``'s output, without the probe and runc's init."""
    lines = output.splitlines()
    probe = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    names: dict[int, str] = {}
    uids: dict[int, tuple[int, ...]] = {}
    for line in lines[1:]:
        match = _STATUS_LINE.match(line)
        if not match:
            continue
        pid = int(match[1])
        if match[2] == "Name":
            names[pid] = match[3].strip()
        else:
            uids[pid] = tuple(int(uid) for uid in match[3].split())
    processes = (Process(pid, names.get(pid, "?"), uids[pid]) for pid in sorted(uids))
    return [p for p in processes if p.pid != probe and not p.name.startswith(RUNTIME_PREFIX)]


# --- listening sockets ----------------------------------------------------------------------

LISTEN_COMMAND = "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"
TCP_LISTEN = "0A"
# Docker's embedded DNS server listens on 127.0.0.11 inside every container on a user-defined
# network; dockerd owns that socket, not the container's processes.
DOCKER_DNS = ipaddress.ip_address("127.0.0.11")


@dataclass(frozen=True, order=True)
class Listener:
    address: str
    port: int

    @property
    def all_interfaces(self) -> bool:
        return ipaddress.ip_address(self.address).is_unspecified

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


def _address(hex_address: str) -> str:
    """An address of /proc/net/tcp{,6}: 32-bit words in the kernel's (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(packed))


def parse_listeners(output: str) -> set[Listener]:
    """The listening TCP sockets in the text of /proc/net/tcp and /proc/net/tcp6."""
    listeners = set()
    for line in output.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != TCP_LISTEN or ":" not in fields[1]:
            continue
        hex_address, hex_port = fields[1].split(":")
        listeners.add(Listener(_address(hex_address), int(hex_port, 16)))
    return listeners


def unexpected_listeners(listeners: Iterable[Listener], port: int) -> list[Listener]:
    """Listeners other than ``port`` and Docker's embedded DNS."""
    return sorted(
        listener
        for listener in listeners
        if listener.port != port and ipaddress.ip_address(listener.address) != DOCKER_DNS
    )


# --- resource limits ------------------------------------------------------------------------

CGROUP_FILES = (
    # cgroup v2: the container's own cgroup is mounted at /sys/fs/cgroup
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/pids.max",
    "/sys/fs/cgroup/cpu.max",
    # cgroup v1: one hierarchy per controller
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    "/sys/fs/cgroup/pids/pids.max",
    "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
    "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
    "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us",
    "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us",
)
CGROUP_COMMAND = (
    f"for f in {' '.join(CGROUP_FILES)}; do "
    '[ -r "$f" ] && printf "%s=%s\\n" "$f" "$(cat "$f")"; done; true'
)
# cgroup v1 reports "no memory limit" as the largest page-aligned 63-bit number.
V1_UNLIMITED_MEMORY = 2**62
PAGE_SIZE = 4096
DEFAULT_CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    """Resource limits; None means unlimited."""

    memory: int | None  # bytes
    pids: int | None
    cpus: float | None


def parse_cgroup_files(output: str) -> dict[str, str]:
    files = {}
    for line in output.splitlines():
        path, sep, value = line.partition("=")
        if sep:
            files[path] = value.strip()
    return files


def _v1_cpu_quota(files: Mapping[str, str]) -> float | None:
    for directory in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):
        quota = files.get(f"{directory}/cpu.cfs_quota_us")
        if quota is not None:
            period = int(files.get(f"{directory}/cpu.cfs_period_us", DEFAULT_CPU_PERIOD_US))
            return None if int(quota) < 0 else int(quota) / period
    return None


def cgroup_limits(files: Mapping[str, str]) -> Limits:
    """The limits the kernel applies, from the cgroup files (v2 if present, else v1)."""
    if "/sys/fs/cgroup/memory.max" in files:
        memory = files["/sys/fs/cgroup/memory.max"]
        pids = files.get("/sys/fs/cgroup/pids.max", "max")
        quota, _, period = files.get("/sys/fs/cgroup/cpu.max", "max").partition(" ")
        return Limits(
            memory=None if memory == "max" else int(memory),
            pids=None if pids == "max" else int(pids),
            cpus=None if quota == "max" else int(quota) / int(period or DEFAULT_CPU_PERIOD_US),
        )
    memory_v1 = int(files.get("/sys/fs/cgroup/memory/memory.limit_in_bytes", V1_UNLIMITED_MEMORY))
    pids = files.get("/sys/fs/cgroup/pids/pids.max", "max")
    return Limits(
        memory=None if memory_v1 >= V1_UNLIMITED_MEMORY else memory_v1,
        pids=None if pids == "max" else int(pids),
        cpus=_v1_cpu_quota(files),
    )


def docker_limits(host_config: Mapping[str, Any]) -> Limits:
    """The limits Docker was told to apply: ``HostConfig`` of ``docker inspect``."""
    memory = host_config.get("Memory") or 0
    pids = host_config.get("PidsLimit") or 0
    cpus: float | None = None
    if host_config.get("NanoCpus"):
        cpus = host_config["NanoCpus"] / 1e9
    elif (host_config.get("CpuQuota") or 0) > 0:
        cpus = host_config["CpuQuota"] / (host_config.get("CpuPeriod") or DEFAULT_CPU_PERIOD_US)
    return Limits(memory=memory if memory > 0 else None, pids=pids if pids > 0 else None, cpus=cpus)


def _show(resource: str, value: float | None) -> str:
    if value is None:
        return "unlimited"
    if resource == "memory":
        return f"{value / 2**20:g} MiB"
    if resource == "cpus":
        return f"{value:g} CPUs"
    return f"{value:g}"


_COMPOSE_KEYS = {"memory": "mem_limit", "pids": "pids_limit", "cpus": "cpus"}


def limit_problems(inside: Limits, docker: Limits) -> list[str]:
    """Every limit that is missing, or that the kernel applies differently from Docker's."""
    problems = []
    for resource, key in _COMPOSE_KEYS.items():
        want = getattr(docker, resource)
        have = getattr(inside, resource)
        if want is None:
            problems.append(f"no {resource} limit in Docker: set {key} in the Compose file")
        elif have is None:
            problems.append(
                f"Docker reports a {resource} limit of {_show(resource, want)}, "
                "but the container's cgroup has none"
            )
        elif not _same(resource, have, want):
            problems.append(
                f"the container's cgroup limits {resource} to {_show(resource, have)}, "
                f"Docker reports {_show(resource, want)}"
            )
    return problems


def _same(resource: str, have: float, want: float) -> bool:
    if resource == "memory":
        return abs(have - want) < PAGE_SIZE  # the kernel rounds down to whole pages
    if resource == "cpus":
        return abs(have - want) < 1e-3
    return have == want


# --- read-only root filesystem --------------------------------------------------------------

WRITE_PROBE_PATHS = ("/", "/app")
# The mounts, then an attempt to create a file in each directory: "write <dir> ok" (the file is
# removed at once) or "write <dir> <errno name>".
ROOTFS_COMMAND = (
    "cat /proc/mounts && python3 -c '"
    "import errno, os, sys, uuid\n"
    "for d in sys.argv[1:]:\n"
    '    p = os.path.join(d, ".bluegreen-infra-probe-" + uuid.uuid4().hex)\n'
    "    try:\n"
    "        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))\n"
    "    except OSError as e:\n"
    '        print("write", d, errno.errorcode.get(e.errno, e.errno))\n'
    "    else:\n"
    "        os.unlink(p)\n"
    '        print("write", d, "ok")\n'
    f"' {' '.join(WRITE_PROBE_PATHS)}"
)


def root_mount_options(mounts: str) -> set[str]:
    """The options of the filesystem mounted at / in the text of /proc/mounts (the last wins)."""
    options: set[str] = set()
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "/":
            options = set(fields[3].split(","))
    return options


def parse_write_probe(output: str) -> dict[str, str]:
    """Directory -> "ok" (the write worked) or the errno name of the refusal."""
    results = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == "write":
            results[fields[1]] = fields[2]
    return results


# --- secrets in files -----------------------------------------------------------------------

SCAN_TIMEOUT_S = 60
SECRET_KEYS = ("POSTGRES_PASSWORD", "DJANGO_SECRET_KEY", "STATS_PASSWORD")
# Where a secret may live in a file: Docker's mount point for Compose/Swarm secrets.
SECRET_HOMES = ("/run/secrets/",)
# Every top-level entry but the kernel's views and the symlinks of merged /usr (scanned through
# /usr), plus the shared-memory tmpfs under /dev. Patterns (the secrets) come on stdin, never on
# a command line; -o -Z prints "<file>\0<match>" so the caller can name the secret by its key.
SCAN_GREP = "env LC_ALL=C grep -rFoaZ -f - --"
SCAN_COMMAND = (
    f"exec nice -n 19 timeout {SCAN_TIMEOUT_S} {SCAN_GREP} "
    "$(find / -mindepth 1 -maxdepth 1 ! -type l ! -name proc ! -name sys ! -name dev) "
    "$(test -d /dev/shm && echo /dev/shm)"
)
# grep's complaints about files the container's user cannot read (or that vanished mid-scan):
# those files are not readable to the app, which is what the check is about.
_HARMLESS_GREP_ERROR = re.compile(r": (Permission denied|No such file or directory)$")


def secrets_to_find(environment: Mapping[str, str]) -> dict[str, str]:
    """The secrets of the stack's environment, by key (empty ones skipped)."""
    return {key: environment[key] for key in SECRET_KEYS if environment.get(key)}


def secret_files(output: str, secrets: Mapping[str, str]) -> dict[str, set[str]]:
    """File -> the keys of the secrets found in it, from ``SCAN_COMMAND``'s output.

    The output holds the secrets themselves; nothing of it but file names and keys leaves here.
    """
    by_value = sorted(secrets.items(), key=lambda item: -len(item[1]))
    found: dict[str, set[str]] = {}
    for line in output.splitlines():
        path, sep, match = line.partition("\0")
        if not sep:
            continue
        for key, value in by_value:
            if match == value:
                if not path.startswith(SECRET_HOMES):
                    found.setdefault(path, set()).add(key)
                break
    return found


def scan_error(exit_status: int, stderr: str) -> str | None:
    """Why the scan cannot be trusted, or None (grep: 0 found, 1 none, 2 with only unreadables)."""
    if exit_status == 124:
        return f"the scan did not finish within {SCAN_TIMEOUT_S} s"
    if exit_status in (0, 1):
        return None
    errors = [line for line in stderr.splitlines() if not _HARMLESS_GREP_ERROR.search(line)]
    if exit_status == 2 and not errors:
        return None
    return f"the scan failed (exit status {exit_status}): {' '.join(errors)[:300]}"
