"""Setting up fails in one clear line and makes nothing: the cases that need the Docker daemon.

The base image's build runs against a closed loopback port as its Debian mirror, under a tag no
one uses; the free-space checks are given a minimum above what is free. ``setup.sh`` runs from a
copy of the scripts (its own repository folder), so nothing of this checkout is touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.integration.conftest import REPO

SCRIPTS = REPO / "scripts"
UNREACHABLE_MIRROR = "http://127.0.0.1:9/debian"  # a closed loopback port: refused at once
ABSENT_TAG = "bluegreen-test-unreachable:none"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap needs root")


def run(
    command: list[str], env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def image_exists(tag: str) -> bool:
    return run(["docker", "image", "inspect", tag], {}).returncode == 0


def docker_root() -> Path:
    return Path(run(["docker", "info", "--format", "{{.DockerRootDir}}"], {}).stdout.strip())


def free_mb(folder: Path) -> int:
    return shutil.disk_usage(folder).free // 2**20


@pytest.fixture
def absent_tag() -> str:
    if image_exists(ABSENT_TAG):
        pytest.fail(f"{ABSENT_TAG} exists; it is this test's and must not")
    return ABSENT_TAG


@needs_root
def test_unreachable_mirror_is_one_line_and_makes_nothing(tmp_path: Path, absent_tag: str) -> None:
    env = {
        "TMPDIR": str(tmp_path),
        "BLUEGREEN_BASE_IMAGE": absent_tag,
        "BLUEGREEN_DEBIAN_MIRROR": UNREACHABLE_MIRROR,
    }
    done = run(["bash", str(SCRIPTS / "build-base-image.sh")], env)

    assert done.returncode == 1
    (log,) = tmp_path.glob("bluegreen-debootstrap.*.log")
    assert done.stderr.splitlines() == [
        f"build-base-image: debootstrap --variant=minbase bookworm from {UNREACHABLE_MIRROR} "
        "(about a minute)",
        f"build-base-image: error: debootstrap failed to make a bookworm rootfs from "
        f"{UNREACHABLE_MIRROR} (Failed getting release file "
        f"{UNREACHABLE_MIRROR}/dists/bookworm/Release); log kept in {log}; "
        "set BLUEGREEN_DEBIAN_MIRROR to a reachable Debian mirror",
    ]
    assert done.stdout == ""
    assert "Connection refused" in log.read_text()  # debootstrap's own log, kept in it
    assert list(tmp_path.iterdir()) == [log]  # no rootfs left
    assert not image_exists(absent_tag)


@pytest.fixture
def present_tag() -> Iterator[str]:
    """A tiny image of this test's own (an empty file system), removed afterwards."""
    tag = "bluegreen-test-present:empty"
    made = subprocess.run(
        ["docker", "import", "-", tag], input=b"\0" * 1024,  # an empty tar archive
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    yield tag
    subprocess.run(["docker", "rmi", made.stdout.decode().strip()], capture_output=True, timeout=60)


def test_a_present_tag_is_reused_without_the_network(tmp_path: Path, present_tag: str) -> None:
    image_id = run(["docker", "image", "inspect", "--format", "{{.Id}}", present_tag], {}).stdout
    env = {
        "TMPDIR": str(tmp_path),
        "BLUEGREEN_BASE_IMAGE": present_tag,
        "BLUEGREEN_DEBIAN_MIRROR": UNREACHABLE_MIRROR,
        # Reusing needs no room: the minimums are not even checked.
        "BLUEGREEN_MIN_FREE_MB": str(free_mb(docker_root()) + 1_000_000),
    }
    done = run(["bash", str(SCRIPTS / "build-base-image.sh")], env)

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{present_tag}\n"
    assert done.stderr == f"build-base-image: {present_tag} is present; reusing it\n"
    assert list(tmp_path.iterdir()) == []
    inspect = ["docker", "image", "inspect", "--format", "{{.Id}}", present_tag]
    assert run(inspect, {}).stdout == image_id


@needs_root
@pytest.mark.parametrize("where", ["docker root dir", "TMPDIR"])
def test_too_little_room_for_the_base_image_is_one_line_and_makes_nothing(
    tmp_path: Path, absent_tag: str, where: str
) -> None:
    if where == "TMPDIR":
        folder, variable, default = tmp_path, "BLUEGREEN_MIN_TMP_MB", 512
        what = "TMPDIR, where debootstrap makes the rootfs"
    else:
        folder, variable, default = docker_root(), "BLUEGREEN_MIN_FREE_MB", 3072
        what = "Docker's root dir"
    needed = free_mb(folder) + 1_000_000
    env = {
        "TMPDIR": str(tmp_path),
        "BLUEGREEN_BASE_IMAGE": absent_tag,
        "BLUEGREEN_DEBIAN_MIRROR": UNREACHABLE_MIRROR,
        variable: str(needed),
    }
    done = run(["bash", str(SCRIPTS / "build-base-image.sh")], env)

    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    have = line.split(" has ")[1].split(" MB free")[0]
    assert abs(int(have) - free_mb(folder)) < 1024  # the folder's free MB (others write too)
    assert line == (
        f"build-base-image: error: {folder} ({what}) has {have} MB free and {needed} MB are "
        f"needed; free some space there, or lower the minimum with {variable} "
        f"(default: {default} MB)"
    )
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no rootfs, no log: debootstrap never ran
    assert not image_exists(absent_tag)


def copy_of_setup(home: Path) -> Path:
    """A repository folder with this checkout's scripts and pyproject.toml, and no .venv."""
    repo = home / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("setup.sh", "ensure-docker.sh", "build-base-image.sh"):
        shutil.copy2(SCRIPTS / name, repo / "scripts" / name)
    shutil.copy2(REPO / "pyproject.toml", repo / "pyproject.toml")
    return repo


def test_setup_without_room_for_the_images_is_one_line_and_builds_nothing(
    tmp_path: Path, absent_tag: str
) -> None:
    repo = copy_of_setup(tmp_path)
    root = docker_root()
    needed = free_mb(root) + 1_000_000
    env = {
        "TMPDIR": str(tmp_path),
        "BLUEGREEN_MIN_FREE_MB": str(needed),
        "BLUEGREEN_BASE_IMAGE": absent_tag,
        "BLUEGREEN_DEBIAN_MIRROR": UNREACHABLE_MIRROR,
    }
    env_without_base_image = {k: v for k, v in os.environ.items() if k != "BASE_IMAGE"}
    done = subprocess.run(
        ["bash", str(repo / "scripts" / "setup.sh")], env={**env_without_base_image, **env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    have = line.split(" has ")[1].split(" MB free")[0]
    assert abs(int(have) - free_mb(root)) < 1024
    assert line == (
        f"setup: error: {root} (Docker's root dir) has {have} MB free and {needed} MB are needed "
        "for the stack's images; free some space there, or lower the minimum with "
        "BLUEGREEN_MIN_FREE_MB (default: 3072 MB)"
    )
    assert done.stdout == "ensure-docker: Docker engine answers; nothing to do\n"
    # Nothing built or installed: no base image, no virtualenv, nothing in TMPDIR.
    assert not image_exists(absent_tag)
    assert sorted(p.name for p in repo.iterdir()) == ["pyproject.toml", "scripts"]
    assert list(tmp_path.iterdir()) == [repo]


def test_setup_sourced_exports_the_base_image_and_the_venv(tmp_path: Path) -> None:
    """The successful path, as deploy.sh and test.sh use it: `. scripts/setup.sh`."""
    repo = copy_of_setup(tmp_path)
    stamp = hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()[:16]
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / f".installed-{stamp}").touch()  # installed: setup.sh runs no pip
    script = '. scripts/setup.sh; echo "BASE_IMAGE=$BASE_IMAGE"; echo "PATH=$PATH"'
    done = run(["bash", "-c", script], {"BASE_IMAGE": "bluegreen-test-given:base"}, cwd=repo)

    assert done.returncode == 0, done.stderr
    assert done.stderr == "setup: base image: bluegreen-test-given:base\n"
    out = done.stdout.splitlines()
    assert out[0] == "ensure-docker: Docker engine answers; nothing to do"
    assert out[1] == "BASE_IMAGE=bluegreen-test-given:base"
    assert out[2].startswith(f"PATH={repo}/.venv/bin:")
    assert sorted(p.name for p in (repo / ".venv").iterdir()) == [f".installed-{stamp}", "bin"]
