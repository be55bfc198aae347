"""Setting up a fresh machine fails in one clear line, and changes nothing (no Docker daemon).

The real scripts run in a PATH without Docker (``docker_less_path``); apt sees only this test's
own configuration (no package lists, a source on a closed loopback port), so the machine's apt
and dpkg state are read, never written. Cases that need the daemon are in
``tests/integration/test_setup_scripts.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
SYSTEM_BIN = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
UNREACHABLE_MIRROR = "http://127.0.0.1:9/debian"  # a closed loopback port: refused at once
# apt's and dpkg's state on this machine, which no case may change.
SYSTEM_STATE = (Path("/var/lib/apt"), Path("/var/cache/apt"), Path("/var/lib/dpkg"))

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="runs apt-get as root")


@pytest.fixture
def docker_less_path() -> Iterator[str]:
    """A PATH with every system executable except Docker's (docker*, dockerd*, docker-compose*).

    A folder of its own, readable by any user (the tmp_path of root is not), of symlinks to the
    first executable of each name along the system's usual PATH.
    """
    folder = Path(tempfile.mkdtemp(prefix="bg-no-docker-"))
    folder.chmod(0o755)
    for directory in map(Path, SYSTEM_BIN):
        for program in sorted(directory.iterdir()) if directory.is_dir() else ():
            link = folder / program.name
            if program.name.startswith("docker") or link.exists() or link.is_symlink():
                continue
            if program.is_file() and os.access(program, os.X_OK):
                link.symlink_to(program)
    assert shutil.which("docker", path=str(folder)) is None
    assert shutil.which("dockerd", path=str(folder)) is None
    assert shutil.which("docker-compose", path=str(folder)) is None
    assert shutil.which("bash", path=str(folder)) is not None
    yield str(folder)
    shutil.rmtree(folder)


def system_state() -> dict[str, tuple[int, int, int, int]]:
    """Each file and folder of apt's and dpkg's state: inode, size, modification/change times.

    A write changes the times, a replacement the inode, a new or removed file the folder's.
    """
    state = {}
    for top in SYSTEM_STATE:
        for folder, _, names in os.walk(top):
            for path in (Path(folder), *(Path(folder, name) for name in names)):
                stat = path.lstat()
                state[str(path)] = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    return state


@pytest.fixture
def readable_scripts() -> Iterator[Path]:
    """A copy of scripts/ that any user can read: a checkout in root's private folder is not."""
    folder = Path(tempfile.mkdtemp(prefix="bg-scripts-"))
    folder.chmod(0o755)
    for script in SCRIPTS.glob("*.sh"):
        shutil.copy(script, folder / script.name)
        (folder / script.name).chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def run_script(
    name: str,
    env: Mapping[str, str],
    prefix: list[str] | None = None,
    scripts: Path = SCRIPTS,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or []), "/bin/bash", str(scripts / name)],
        env=dict(env), cwd="/", capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def unreachable_apt(home: Path) -> dict[str, Path]:
    """An APT_CONFIG of this test's own: one source, on a closed loopback port; no lists yet.

    Everything apt reads or writes is under ``home``: sources, lists, caches, logs, its locks
    (next to the dpkg status it is given: an empty one, so no package counts as installed).
    The machine's apt.conf.d is not read: Dir::Etc::Parts is an empty folder of its own.
    """
    home.mkdir()
    paths = {name: home / name for name in ("parts", "sources.d", "state", "cache", "log")}
    for folder in paths.values():
        folder.mkdir()
    (home / "state" / "lists").mkdir()
    (home / "sources.list").write_text(f"deb {UNREACHABLE_MIRROR} bookworm main\n")
    (home / "status").write_text("")
    settings = {
        "Dir::Etc::Parts": paths["parts"],
        "Dir::Etc::Main": "/dev/null",
        "Dir::Etc::SourceList": home / "sources.list",
        "Dir::Etc::SourceParts": paths["sources.d"],
        "Dir::State": paths["state"],
        "Dir::State::Lists": home / "state" / "lists",
        "Dir::State::status": home / "status",
        "Dir::Cache": paths["cache"],
        "Dir::Log": paths["log"],
        # The download methods run as root: apt's _apt user cannot enter root's tmp_path.
        "APT::Sandbox::User": "root",
        "Acquire::Retries": "0",  # refused is refused: no retries (apt waits between them)
    }
    config = home / "apt.conf"
    config.write_text("".join(f'{key} "{value}";\n' for key, value in settings.items()))
    return {"config": config, "lists": home / "state" / "lists"}


def test_no_docker_and_not_root_is_one_line(
    docker_less_path: str, readable_scripts: Path, tmp_path: Path
) -> None:
    before = system_state()
    env = {
        "PATH": docker_less_path,
        "HOME": "/nonexistent",
        "BLUEGREEN_DOCKERD_LOG": str(tmp_path / "dockerd.log"),
        "BLUEGREEN_APT_LOG": str(tmp_path / "apt.log"),
    }
    nobody = NOBODY if os.geteuid() == 0 else None
    done = run_script("ensure-docker.sh", env, prefix=nobody, scripts=readable_scripts)

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "ensure-docker: error: Docker is missing (docker.io) and installing it needs root; "
        "install Debian's docker.io and docker-compose, or run this script as root"
    ]
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no log: nothing was tried
    assert system_state() == before


@needs_root
def test_apt_unreachable_is_one_line_naming_apts_log(docker_less_path: str, tmp_path: Path) -> None:
    apt = unreachable_apt(tmp_path / "apt")
    apt_log = tmp_path / "apt.log"
    env = {
        "PATH": docker_less_path,
        "HOME": str(tmp_path),
        "APT_CONFIG": str(apt["config"]),
        "BLUEGREEN_DOCKERD_LOG": str(tmp_path / "dockerd.log"),
        "BLUEGREEN_APT_LOG": str(apt_log),
    }
    before = system_state()
    done = run_script("ensure-docker.sh", env)

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "ensure-docker: error: Debian's package archive cannot be reached (apt-get update failed: "
        f"Failed to fetch {UNREACHABLE_MIRROR}/dists/bookworm/InRelease Could not connect to "
        "127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)), so Docker (docker.io) "
        "could not be installed; check the network and the sources in /etc/apt, or install "
        f"Docker yourself; apt's output: {apt_log}"
    ]
    assert done.stdout == f"ensure-docker: installing docker.io with apt-get (log: {apt_log})\n"
    # apt's own detail is in the log, and its update really failed (not only warned).
    log = apt_log.read_text()
    assert "E: Unable to locate package docker.io" in log
    assert f"E: Failed to fetch {UNREACHABLE_MIRROR}/dists/bookworm/InRelease" in log
    # Nothing installed or fetched: no package list, no dockerd started, the machine's apt and
    # dpkg state untouched.
    assert [p.name for p in apt["lists"].iterdir() if p.is_file() and p.name != "lock"] == []
    assert not (tmp_path / "dockerd.log").exists()
    assert system_state() == before


def fake_program(folder: Path, name: str, body: str) -> None:
    program = folder / name
    program.write_text(f"#!/bin/sh\n{body}\n")
    program.chmod(0o755)


@needs_root
@pytest.mark.parametrize("mirror", [None, UNREACHABLE_MIRROR])
def test_debootstrap_gets_the_mirror_only_when_one_is_set(
    tmp_path: Path, mirror: str | None
) -> None:
    """No mirror set: debootstrap is called without one, so its own default is used."""
    fakes = tmp_path / "bin"
    fakes.mkdir()
    docker_root = tmp_path / "docker-root"
    docker_root.mkdir()
    # A daemon that answers and has no base image; its root dir is a folder of the test.
    fake_program(
        fakes,
        "docker",
        f'case "$1 ${{2:-}}" in\n'
        f'  "info ") exit 0 ;;\n'
        f'  "info --format") echo "{docker_root}" ;;\n'
        f'  "image inspect") exit 1 ;;\n'
        f"  *) exit 99 ;;\n"
        f"esac",
    )
    arguments = tmp_path / "debootstrap-arguments"
    fake_program(
        fakes,
        "debootstrap",
        f'printf "%s\\n" "$@" >"{arguments}"\necho "E: Failed getting release file (fake)"\nexit 1',
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {
        "PATH": f"{fakes}:{os.environ['PATH']}",
        "TMPDIR": str(scratch),
        "BLUEGREEN_BASE_IMAGE": "bluegreen-test-unreachable:none",
    }
    if mirror:
        env["BLUEGREEN_DEBIAN_MIRROR"] = mirror
    done = run_script("build-base-image.sh", env)

    assert done.returncode == 1
    called = arguments.read_text().splitlines()
    assert called[:2] == ["--variant=minbase", "bookworm"]
    assert called[2].startswith(f"{scratch}/bluegreen-rootfs.")
    assert called[3:] == ([mirror] if mirror else [])
    (log,) = scratch.glob("bluegreen-debootstrap.*.log")
    source = mirror or "debootstrap's default mirror"
    assert done.stderr.splitlines()[-1] == (
        f"build-base-image: error: debootstrap failed to make a bookworm rootfs from {source} "
        f"(Failed getting release file (fake)); log kept in {log}; "
        "set BLUEGREEN_DEBIAN_MIRROR to a reachable Debian mirror"
    )
    assert list(scratch.iterdir()) == [log]  # the rootfs is gone
    assert done.stdout == ""
