"""Commands in a database container through the docker CLI, each bounded twice and findable.

Every command runs with ``timeout`` in the container (a killed ``docker exec`` client does not
stop its process there) and a slightly longer timeout on the host. Each carries a unique marker
in its environment, so that what is left of a failed one can be found and stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import secrets
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Final

from pytest_bluegreen.adapters.databases.dump_files import (
    CHUNK,
    Encoder,
    Streamed,
    tail,
    write_failed,
)
from pytest_bluegreen.core.errors import BackupError

# The host waits this much longer than the in-container timeout, which should fire first.
HOST_GRACE_S: Final = 30.0
CLEANUP_TIMEOUT_S: Final = 30.0
TIMED_OUT: Final = (124, 137, -9)  # timeout's own code, and a KILL in or outside the container
NOT_FOUND: Final = (126, 127)  # the shell's or docker exec's "cannot run that program"
# Stop the commands of one marker now: TERM to their ``timeout``, which passes it on to the
# command's process group, as when its time is up. Never KILL: a PostgreSQL postmaster (PID 1 of
# its container) takes an orphan killed that way for a crashed backend. POSIX sh, so it also runs
# in a container without bash. $1 is the marker, "NAME=value".
STOP_SCRIPT: Final = r"""
for env in /proc/[0-9]*/environ; do
  pid=${env#/proc/}
  pid=${pid%/environ}
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = timeout ] || continue
  if tr '\0' '\n' <"$env" 2>/dev/null | grep -qxF -- "$1"; then
    kill -TERM "$pid" 2>/dev/null || true
  fi
done
"""


class ContainerExec:
    """Commands in one container through the docker CLI, each bounded twice and findable.

    ``marker_env`` names the environment variable that carries each command's unique marker
    (``PGAPPNAME`` for PostgreSQL, where it also names the sessions); ``on_stop`` is called with
    a marker after its processes were stopped (e.g. to end its database sessions);
    ``timeout_hint`` says what can make a command of this database run out of time.
    """

    __slots__ = ("container_id", "docker", "marker_env", "on_stop", "timeout_hint", "timeout_s")

    def __init__(
        self,
        container_id: str,
        docker: Sequence[str],
        timeout_s: float,
        *,
        marker_env: str,
        timeout_hint: str,
        on_stop: Callable[[str], None] | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.container_id = container_id
        self.docker = tuple(docker)
        self.timeout_s = timeout_s
        self.marker_env = marker_env
        self.timeout_hint = timeout_hint
        self.on_stop = on_stop

    @staticmethod
    def new_marker() -> str:
        """A unique marker for one command (a valid PostgreSQL application name too)."""
        return f"bg_backup_{secrets.token_hex(6)}"

    def argv(
        self,
        command: Sequence[str],
        marker: str,
        *,
        timeout_s: float | None = None,
        interactive: bool = False,
    ) -> list[str]:
        """``docker exec`` of ``command``, bounded by ``timeout`` inside the container."""
        seconds = str(math.ceil(timeout_s or self.timeout_s))
        return [
            *self.docker,
            "exec",
            *(["-i"] if interactive else []),
            *("-e", f"{self.marker_env}={marker}"),
            self.container_id,
            *("timeout", seconds),  # no -k: a KILL would orphan processes (see STOP_SCRIPT)
            *command,
        ]

    def run(
        self,
        command: Sequence[str],
        what: str,
        *,
        stdin: IO[bytes] | None = None,
        data: bytes | None = None,
        chunks: Iterable[bytes] | None = None,
        timeout_s: float | None = None,
        stop_on_timeout: bool = True,
    ) -> str:
        """Run a command to its end; a failure is a BackupError with its stderr's tail.

        Its input is a file (``stdin``), a string of bytes (``data``), or ``chunks`` written as
        they come (a stream too large to hold); its output is returned as text.
        """
        timeout_s = timeout_s or self.timeout_s
        marker = self.new_marker()
        interactive = stdin is not None or data is not None or chunks is not None
        argv = self.argv(command, marker, timeout_s=timeout_s, interactive=interactive)
        try:
            if chunks is not None:
                returncode, out, err = _feed(argv, chunks, timeout_s + HOST_GRACE_S)
            else:
                result = subprocess.run(
                    argv,
                    stdin=stdin if stdin is not None or data is not None else subprocess.DEVNULL,
                    input=data,
                    capture_output=True,
                    timeout=timeout_s + HOST_GRACE_S,
                    check=False,
                )
                returncode, out, err = result.returncode, result.stdout, result.stderr
        except FileNotFoundError:
            raise BackupError(no_docker(self.docker)) from None
        except subprocess.TimeoutExpired:
            if stop_on_timeout:
                self.stop(marker)
            raise BackupError(f"{what} did not finish within {timeout_s:.0f}s") from None
        except BaseException:  # e.g. Ctrl-C, or the chunks could not be read
            self.stop(marker)
            raise
        if returncode != 0:
            stderr = err.decode("utf-8", "replace")
            raise BackupError(self.failed(what, returncode, stderr, timeout_s))
        return out.decode("utf-8", "replace")

    def stream(
        self,
        command: Sequence[str],
        tmp: Path,
        *,
        encoder: Encoder | None = None,
        tail_bytes: int = 0,
    ) -> Streamed:
        """Copy the command's stdout (through ``encoder``) to a new 0600 file, then fsync it.

        A failure to write stops the command and is a BackupError; a command that failed is
        stopped too, and its exit code and stderr are returned for the caller to explain.
        """
        marker = self.new_marker()
        argv = self.argv(command, marker)
        with tempfile.TemporaryFile() as errors:
            try:
                streamed = self._copy(argv, tmp, errors, encoder, tail_bytes)
            except OSError as exc:
                self.stop(marker)
                raise BackupError(write_failed(tmp.parent, exc)) from None
            except BaseException:  # e.g. Ctrl-C: the dump would hold its locks until timeout
                self.stop(marker)
                raise
            sha256, size, returncode, last = streamed
            stderr = read_stderr(errors)
        if returncode != 0:
            self.stop(marker)
        return Streamed(sha256, size, returncode, stderr, last)

    def _copy(
        self,
        argv: list[str],
        tmp: Path,
        errors: IO[bytes],
        encoder: Encoder | None,
        tail_bytes: int,
    ) -> tuple[str, int, int, bytes]:
        digest = hashlib.sha256()
        size = 0
        last = b""
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, self._popen(argv, errors) as proc:
            assert proc.stdout is not None
            timer = threading.Timer(self.timeout_s + HOST_GRACE_S, proc.kill)
            timer.start()

            def write(data: bytes) -> None:
                nonlocal size
                out.write(data)
                digest.update(data)
                size += len(data)

            try:
                while chunk := proc.stdout.read(CHUNK):
                    if tail_bytes:
                        last = (last + chunk)[-tail_bytes:]
                    write(encoder.compress(chunk) if encoder else chunk)
                if encoder:
                    write(encoder.flush())
                out.flush()
                os.fsync(out.fileno())
            except BaseException:
                proc.kill()
                raise
            finally:
                timer.cancel()
            returncode = proc.wait()
        return digest.hexdigest(), size, returncode, last

    def _popen(self, argv: list[str], errors: IO[bytes]) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors
            )
        except FileNotFoundError:
            raise BackupError(no_docker(self.docker)) from None

    def stop(self, marker: str) -> None:
        """Best effort: end what is left of a failed command, so it holds no snapshot or lock.

        A killed ``docker exec`` client leaves its process running in the container.
        """
        with contextlib.suppress(BackupError):
            self.run(
                ["sh", "-c", STOP_SCRIPT, "bg-stop", f"{self.marker_env}={marker}"],
                "stopping leftover processes",
                timeout_s=CLEANUP_TIMEOUT_S,
                stop_on_timeout=False,
            )
        if self.on_stop is not None:
            with contextlib.suppress(BackupError):
                self.on_stop(marker)

    def failed(
        self, what: str, returncode: int, stderr: str, timeout_s: float | None = None
    ) -> str:
        """One message for a command that failed: timed out, not found, or its own error."""
        if returncode in TIMED_OUT:
            seconds = timeout_s or self.timeout_s
            return (
                f"{what} did not finish within {seconds:.0f}s and was stopped; "
                f"{self.timeout_hint}:\n{tail(stderr)}"
            )
        if returncode in NOT_FOUND:
            return (
                f"{what} failed (exit {returncode}): a program it needs is not in the database "
                f"container (it needs `timeout` and the database's tools):\n{tail(stderr)}"
            )
        return f"{what} failed (exit {returncode}):\n{tail(stderr)}"


def _feed(argv: list[str], chunks: Iterable[bytes], timeout_s: float) -> tuple[int, bytes, bytes]:
    """Run ``argv`` writing ``chunks`` to its stdin; its output goes to files (no deadlock)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err)
        assert proc.stdin is not None
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            try:
                for chunk in chunks:
                    proc.stdin.write(chunk)
            except BrokenPipeError:
                pass  # it stopped reading: its exit code and stderr say why
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            returncode = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        if expired.is_set():
            raise subprocess.TimeoutExpired(argv, timeout_s)
        out.seek(0)
        err.seek(0)
        return returncode, out.read(), err.read(1 << 22)


def read_stderr(handle: IO[bytes], limit: int = 1 << 22) -> str:
    """A command's stderr from its file (the row counts line among what it said)."""
    handle.seek(0)
    return handle.read(limit).decode("utf-8", "replace")


def no_docker(docker: Sequence[str]) -> str:
    return f"cannot run {' '.join(docker)!r}: not installed or not on PATH; install the docker CLI"
