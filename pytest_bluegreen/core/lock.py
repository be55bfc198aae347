"""One deploy at a time per stack: an ``flock`` on a file in the state folder.

The kernel drops an ``flock`` when its process dies, even by SIGKILL, so a lock left by a killed
deploy is never obeyed: the file still names it, which is how the next run knows to repair.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pytest_bluegreen.core.errors import LockError


@dataclass(frozen=True, slots=True)
class LockHolder:
    deploy_id: str
    pid: int
    started_at: str

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        try:
            data: Any = json.loads(text)
            return cls(str(data["deploy_id"]), int(data["pid"]), str(data["started_at"]))
        except (ValueError, KeyError, TypeError):
            return None


class DeployLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self, deploy_id: str, started_at: str, *, sync: bool = True) -> LockHolder | None:
        """Take the lock or raise :class:`LockError`; return the holder a killed deploy left.

        ``sync=False`` leaves the holder's line unsynced to disk (a process killed still leaves
        it; a machine that loses power may not) until :meth:`sync`: a rollback takes the lock
        that way, as the fsync would cost more than moving the traffic.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = LockHolder.parse(handle.read())
            handle.close()
            who = (
                f"deploy {holder.deploy_id} (pid {holder.pid}, since {holder.started_at})"
                if holder
                else "unknown"
            )
            raise LockError(
                f"another deploy is running on this stack: {who}; wait for it to finish"
            ) from None
        handle.seek(0)
        stale = LockHolder.parse(handle.read())
        handle.seek(0)
        handle.truncate()
        mine = {"deploy_id": deploy_id, "pid": os.getpid(), "started_at": started_at}
        handle.write(json.dumps(mine) + "\n")
        handle.flush()
        self._handle = handle
        if sync:
            self.sync()
        return stale

    def sync(self) -> None:
        """The holder's line on disk, so that even a machine's crash leaves it for a repair."""
        if self._handle is not None:
            os.fsync(self._handle.fileno())

    @property
    def held(self) -> bool:
        return self._handle is not None

    def release(self) -> None:
        """Empty the file, then unlock: an empty file means the last deploy ended cleanly."""
        if self._handle is None:
            return
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.flush()
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None

    def running(self) -> LockHolder | None:
        """The deploy holding the lock now, if any (for status)."""
        if not self.path.is_file():
            return None
        with open(self.path, encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return LockHolder.parse(handle.read()) or LockHolder("unknown", 0, "")
            fcntl.flock(handle, fcntl.LOCK_UN)
        return None
