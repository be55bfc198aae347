from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_bluegreen.core.errors import LockError
from pytest_bluegreen.core.lock import DeployLock, LockHolder


def test_second_holder_is_refused_with_the_first_named(tmp_path: Path) -> None:
    first = DeployLock(tmp_path / "deploy.lock")
    assert first.acquire("d1", "2026-11-29T00:00:00Z") is None
    with pytest.raises(LockError, match=r"deploy d1 \(pid \d+, since 2026-11-29T00:00:00Z\)"):
        DeployLock(tmp_path / "deploy.lock").acquire("d2", "later")
    holder = DeployLock(tmp_path / "deploy.lock").running()
    assert holder == LockHolder("d1", os.getpid(), "2026-11-29T00:00:00Z")
    first.release()
    assert DeployLock(tmp_path / "deploy.lock").running() is None


def test_clean_release_leaves_no_stale_holder(tmp_path: Path) -> None:
    lock = DeployLock(tmp_path / "deploy.lock")
    lock.acquire("d1", "t")
    lock.release()
    assert (tmp_path / "deploy.lock").read_text() == ""
    second = DeployLock(tmp_path / "deploy.lock")
    assert second.acquire("d2", "t") is None
    second.release()


@pytest.mark.parametrize("sync", [True, False])
def test_a_killed_holder_is_detected_not_obeyed(tmp_path: Path, sync: bool) -> None:
    """Synced or not (a rollback's lock), a killed holder's line is there for the next one."""
    path = tmp_path / "deploy.lock"
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from pytest_bluegreen.core.lock import DeployLock\n"
        f"DeployLock(Path({str(path)!r})).acquire('killed-1', 't0', sync={sync})\n"
        "os.kill(os.getpid(), 9)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False)
    assert result.returncode == -9
    assert json.loads(path.read_text())["deploy_id"] == "killed-1"
    assert DeployLock(path).running() is None  # the kernel dropped the flock with the process
    lock = DeployLock(path)
    stale = lock.acquire("d2", "t1")
    lock.release()
    assert stale is not None
    assert stale.deploy_id == "killed-1"
