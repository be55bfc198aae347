"""What every kind of pre-deploy backup shares: its files, and the commands that make them.

A backup is made the same way whatever the database (:mod:`.postgres`, :mod:`.mysql`,
:mod:`.command_db`): streamed from a command in the database container into a hidden 0600 file of
a 0700 folder, checksummed on the way, verified, then published under its final name beside a
``sha256sum``-format sidecar, and only then are old backups rotated away. A backup that fails
anywhere leaves no file behind, and a published one never lacks its checksum.

Every command runs in the container through the docker CLI, bounded twice: by ``timeout`` in the
container (a killed ``docker exec`` client does not stop its process there) and by a slightly
longer timeout on the host. Each command carries a unique marker in its environment, so that
what is left of a failed one can be found and stopped.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Protocol

from pytest_bluegreen.core.errors import BackupError
from pytest_bluegreen.core.files import fsync_dir, write_atomically
from pytest_bluegreen.core.ports import BackupResult

COUNTS_PREFIX: Final = "BG-ROWCOUNTS "
DEFAULT_TIMEOUT_S: Final = 600.0
# The host waits this much longer than the in-container timeout, which should fire first.
HOST_GRACE_S: Final = 30.0
CLEANUP_TIMEOUT_S: Final = 30.0
CHUNK: Final = 1 << 20
STDERR_TAIL_LINES: Final = 20
TIMED_OUT: Final = (124, 137, -9)  # timeout's own code, and a KILL in or outside the container
NOT_FOUND: Final = (126, 127)  # the shell's or docker exec's "cannot run that program"
# Plain file names, short enough for "." + name + ".sql.gz.sha256.partial-xxxxxxxx" in 255 bytes.
BACKUP_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
SIDECAR_LINE: Final = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")

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


class Encoder(Protocol):
    """Turns a stream into what is stored, chunk by chunk (e.g. a ``zlib.compressobj``)."""

    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Dumped:
    """A dump in its temporary file, not yet verified."""

    sha256: str
    size_bytes: int
    row_counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class Streamed:
    """How a streamed command ended: the stored file's checksum and size, and what it said."""

    sha256: str
    size_bytes: int
    returncode: int
    stderr: str
    tail: bytes  # the last bytes of its output, before encoding


# --- making a backup ------------------------------------------------------------------------


def make_backup(
    backup_dir: Path,
    name: str,
    suffix: str,
    keep: int,
    dump: Callable[[Path], Dumped],
    verify: Callable[[Path, Dumped], None],
) -> BackupResult:
    """Dump into a hidden file, verify it, publish it as ``<name><suffix>``, rotate the rest.

    ``dump`` writes the temporary file it is given; ``verify`` raises a :class:`BackupError`
    when the dump does not restore to what it was taken from.
    """
    final = final_path(backup_dir, name, suffix)
    sidecar = checksum_file(final)
    tmp = backup_dir / f".{final.name}.partial-{secrets.token_hex(4)}"
    published = False
    try:
        start = time.monotonic()
        dumped = dump(tmp)
        dumped_at = time.monotonic()
        verify(tmp, dumped)
        verify_s = time.monotonic() - dumped_at
        publish(tmp, final, dumped.sha256)
        published = True
    finally:
        if not published:
            remove_quietly(tmp)
            remove_quietly(sidecar)
    try:
        rotate(backup_dir, keep, suffix)
    except OSError as exc:
        raise BackupError(
            f"the backup {final} is made and verified, but removing old backups failed "
            f"({exc}); fix the permissions of {backup_dir} or remove them by hand"
        ) from None
    return BackupResult(
        final, dumped.sha256, dumped.size_bytes, dumped.row_counts, dumped_at - start, verify_s
    )


def final_path(backup_dir: Path, name: str, suffix: str) -> Path:
    """Check the name and the folder before anything is dumped; make the folder, private."""
    if not BACKUP_NAME.fullmatch(name):
        raise BackupError(
            f"backup name {name!r} must be 1 to 200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit; use a plainer release name"
        )
    final = backup_dir / f"{name}{suffix}"
    if final.exists() or checksum_file(final).exists():
        raise BackupError(
            f"a backup named {final.name} already exists in {backup_dir}; "
            "choose another name (backups are never overwritten)"
        )
    try:
        make_private_dir(backup_dir)
    except OSError as exc:
        raise BackupError(
            f"cannot create the backup folder {backup_dir}: {exc.strerror}; "
            "create it or choose another folder"
        ) from None
    return final


def publish(tmp: Path, final: Path, sha256: str) -> None:
    """Write the sidecar, then rename the dump: a published dump never lacks its checksum."""
    try:
        write_checksum(final, sha256)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except OSError as exc:
        raise BackupError(write_failed(final.parent, exc)) from None


class RestorableServer(Protocol):
    """What a restore needs of a database server whose databases can be created and dropped."""

    def drop_database(self, database: str) -> None: ...
    def _database_exists(self, database: str) -> bool: ...
    def _create_database(self, database: str) -> None: ...


def restore_into(
    server: RestorableServer,
    path: Path,
    database: str,
    load: Callable[[Path, str], None],
    *,
    replace: bool,
) -> None:
    """Restore a checked dump into ``database``, new unless ``replace`` drops it first.

    A restore that fails half-way drops what it created: no half-restored database stays.
    """
    check_restorable(path)
    if replace:
        server.drop_database(database)
    elif server._database_exists(database):
        raise BackupError(
            f"database {database!r} already exists; restore into a new name, "
            "or pass replace=True to drop it first"
        )
    server._create_database(database)
    try:
        load(path, database)
    except BackupError as exc:
        with contextlib.suppress(BackupError):
            server.drop_database(database)
        message = f"{exc}\nThe partly restored database {database!r} was dropped."
        raise BackupError(message) from None


def check_restorable(path: Path) -> None:
    """Refuse a dump that is missing, has no sidecar, or changed since it was made."""
    if not path.is_file():
        raise BackupError(f"no backup file {path}; pass the path of an existing backup")
    if not checksum_file(path).is_file():
        raise BackupError(
            f"{path} has no checksum file {checksum_file(path).name}; refusing to restore "
            "a dump whose integrity cannot be checked"
        )
    if not verify_checksum(path):
        raise BackupError(
            f"{path} does not match its checksum in {checksum_file(path).name}: it changed "
            "after it was made; do not restore it, restore an older backup instead"
        )


def rotate(backup_dir: Path, keep: int, suffix: str = ".dump") -> list[Path]:
    """Remove all but the newest ``keep`` backups and their checksums; return those removed.

    Newest by modification time, then by name; only visible ``*<suffix>`` files count, so
    partial files, sidecars and anything else stay untouched.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    dumps = [
        path
        for path in backup_dir.glob(f"*{suffix}")
        if path.is_file() and not path.name.startswith(".")
    ]
    dumps.sort(key=lambda path: (path.stat().st_mtime_ns, path.name), reverse=True)
    removed = dumps[keep:]
    for path in removed:
        path.unlink(missing_ok=True)
        checksum_file(path).unlink(missing_ok=True)
    return removed


# --- checksums ------------------------------------------------------------------------------


def checksum_file(path: Path) -> Path:
    """The ``sha256sum``-format sidecar of ``path``."""
    return path.with_name(f"{path.name}.sha256")


def write_checksum(path: Path, sha256: str | None = None) -> str:
    """Write ``path``'s sidecar, 0600, in ``sha256sum`` format; hash the file unless given."""
    sha256 = sha256 or file_sha256(path)
    write_atomically(checksum_file(path), f"{sha256}  {path.name}\n", mode=0o600)
    return sha256


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path) -> bool:
    """True when ``path`` matches its sidecar; False when it differs or either file is missing."""
    try:
        line = checksum_file(path).read_text(encoding="utf-8").partition("\n")[0]
    except FileNotFoundError:
        return False
    match = SIDECAR_LINE.fullmatch(line)
    if match is None or match.group(2) != path.name:
        return False
    try:
        return file_sha256(path) == match.group(1).lower()
    except FileNotFoundError:
        return False


# --- row counts -----------------------------------------------------------------------------


def parse_row_counts(output: str) -> dict[str, int]:
    """The table -> rows mapping from the one ``BG-ROWCOUNTS {json}`` line of ``output``."""
    lines = [line for line in output.splitlines() if line.startswith(COUNTS_PREFIX)]
    if len(lines) != 1:
        raise BackupError(
            f"expected one row-count line from the database, got {len(lines)}:\n{tail(output)}"
        )
    try:
        counts = json.loads(lines[0][len(COUNTS_PREFIX) :])
    except json.JSONDecodeError as exc:
        raise BackupError(f"unreadable row counts from the database ({exc})") from None
    if not isinstance(counts, dict) or not all(
        isinstance(table, str) and type(rows) is int and rows >= 0 for table, rows in counts.items()
    ):
        raise BackupError(f"unreadable row counts from the database: {lines[0]!r}")
    return {str(table): int(rows) for table, rows in counts.items()}


def check_counts(expected: Mapping[str, int], restored: Mapping[str, int]) -> None:
    """Raise when the restored copy's row counts are not the snapshot's."""
    tables = sorted(expected.keys() | restored.keys())
    differences = [
        f"{table}: {expected.get(table, 'missing')} != {restored.get(table, 'missing')}"
        for table in tables
        if expected.get(table) != restored.get(table)
    ]
    if differences:
        raise BackupError(
            "the backup does not restore to the data it was taken from "
            f"(table: snapshot rows != restored rows): {'; '.join(differences)}. "
            "The dump was discarded; check the database logs and deploy again."
        )


# --- commands in the container --------------------------------------------------------------


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


# --- small helpers --------------------------------------------------------------------------


def make_private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        return
    path.chmod(0o700)  # mkdir's mode is filtered by the umask


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def read_stderr(handle: IO[bytes], limit: int = 1 << 22) -> str:
    """A command's stderr from its file (the row counts line among what it said)."""
    handle.seek(0)
    return handle.read(limit).decode("utf-8", "replace")


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    """The last lines a command said, without the row counts line."""
    kept = [line for line in text.strip().splitlines() if not line.startswith(COUNTS_PREFIX)]
    return "\n".join(kept[-lines:]) or "(no output)"


def write_failed(folder: Path, exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"not enough space for the backup in {folder} ({exc.strerror}); free space there "
            "or choose another backup folder, then deploy again. No partial file was left."
        )
    return (
        f"cannot write the backup in {folder}: {exc.strerror}; fix the folder "
        "(permissions, mount) or choose another one. No partial file was left."
    )


def no_docker(docker: Sequence[str]) -> str:
    return f"cannot run {' '.join(docker)!r}: not installed or not on PATH; install the docker CLI"
