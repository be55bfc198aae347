"""The pre-deploy database backup: a pg_dump of the live database, proven restorable.

A backup nobody restored is a hope, not a backup. So every dump is restored into a scratch
database and its row counts compared with counts taken in the very snapshot the dump was made
from; concurrent writes during the deploy cannot make that comparison fail. Only a verified dump
gets its final name, and only then are old dumps rotated away.

Every command runs inside the database container through the docker CLI, bounded twice: by
``timeout`` in the container (a killed ``docker exec`` client does not stop its process there)
and by a slightly longer timeout on the host.
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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final

from pytest_bluegreen.core.errors import BackupError
from pytest_bluegreen.core.files import fsync_dir, write_atomically
from pytest_bluegreen.core.ports import BackupResult

COUNTS_PREFIX: Final = "BG-ROWCOUNTS "
DEFAULT_TIMEOUT_S: Final = 600.0
# The host waits this much longer than the in-container timeout, which should fire first.
HOST_GRACE_S: Final = 30.0
CLEANUP_TIMEOUT_S: Final = 30.0
MAINTENANCE_DB: Final = "postgres"
CHUNK: Final = 1 << 20
STDERR_TAIL_LINES: Final = 20
# Plain file names, short enough for "." + name + ".dump.sha256.partial-xxxxxxxx" in 255 bytes.
BACKUP_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
SIDECAR_LINE: Final = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")

# One line, "BG-ROWCOUNTS {json}": JSON escapes any odd character of a table name, and %I
# quotes it in the count query.
COUNT_SQL: Final = (
    f"SELECT '{COUNTS_PREFIX}' || coalesce(json_object_agg(tablename, "
    "(xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', "
    "schemaname, tablename), false, true, '')))[1]::text::bigint ORDER BY tablename), '{}') "
    "FROM pg_tables WHERE schemaname = 'public';"
)

# Counts and dump from one snapshot: a psql coprocess holds a REPEATABLE READ transaction open,
# exports its snapshot and counts in it, then pg_dump reads that same snapshot. The dump goes to
# stdout, the counts to stderr. Arguments: database, user, count query, seconds to wait for psql.
#
# The script outlives its children on every path: the container's PID 1 is the postmaster, which
# reaps orphans and takes one that died of a signal for a crashed backend, restarting the server.
DUMP_SCRIPT: Final = r"""
set -euo pipefail
db=$1 user=$2 count_sql=$3 wait_s=$4
marker='--bg-backup-end--'
to=''
finish() {
  local status=$?
  trap '' TERM INT HUP
  if [[ -n $to ]]; then exec {to}>&-; fi
  wait || true
  exit "$status"
}
trap finish EXIT
trap 'exit 143' TERM INT HUP
coproc PSQL { exec psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$user" -d "$db"; }
to=${PSQL[1]} from=${PSQL[0]}
reply=''
ask() {
  printf '%s\n\\echo %s\n' "$1" "$marker" >&"$to"
  reply=''
  local line
  while IFS= read -r -t "$wait_s" -u "$from" line; do
    if [[ $line == "$marker" ]]; then return 0; fi
    reply+=$line
  done
  echo "bg-backup: psql stopped answering" >&2
  return 1
}
ask 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;'
ask 'SELECT pg_export_snapshot();'
snapshot=$reply
ask "$count_sql"
printf '%s\n' "$reply" >&2
pg_dump --snapshot="$snapshot" -Fc -Z 6 -U "$user" -d "$db"
ask 'COMMIT;'
"""

# Stop one command now, found by its PGAPPNAME: TERM to its ``timeout``, which passes it on to
# the command's process group, as when its time is up. Never KILL (see DUMP_SCRIPT).
STOP_SCRIPT: Final = r"""
exec 2>/dev/null
for env in /proc/[0-9]*/environ; do
  pid=${env//[!0-9]/}
  [[ $(<"/proc/$pid/comm") == timeout ]] || continue
  while IFS= read -r -d '' var; do
    if [[ $var == "PGAPPNAME=$1" ]]; then kill -TERM "$pid" || true; break; fi
  done <"$env" || true
done
"""

STOP_SQL: Final = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :'app';"
)


class DatabaseBackup:
    """Backups of one database of a running PostgreSQL container, kept in ``backup_dir``.

    ``user`` connects over the container's local socket and needs the right to create and drop
    databases (the scratch copy of every verification).
    """

    __slots__ = ("backup_dir", "container_id", "database", "docker", "keep", "timeout_s", "user")

    def __init__(
        self,
        container_id: str,
        database: str,
        user: str,
        backup_dir: Path,
        keep: int = 10,
        docker: Sequence[str] = ("docker",),
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.container_id = container_id
        self.database = database
        self.user = user
        self.backup_dir = Path(backup_dir)
        self.keep = keep
        self.docker = tuple(docker)
        self.timeout_s = timeout_s

    def backup(self, name: str) -> BackupResult:
        """Dump, verify by restoring, then publish as ``<name>.dump`` and rotate old dumps."""
        final = self._final_path(name)
        sidecar = checksum_file(final)
        tmp = self.backup_dir / f".{final.name}.partial-{secrets.token_hex(4)}"
        published = False
        try:
            start = time.monotonic()
            sha256, size, counts = self._dump(tmp)
            dumped = time.monotonic()
            self._verify(tmp, counts)
            verify_s = time.monotonic() - dumped
            self._publish(tmp, final, sha256)
            published = True
        finally:
            if not published:
                _remove(tmp)
                _remove(sidecar)
        try:
            rotate(self.backup_dir, self.keep)
        except OSError as exc:
            raise BackupError(
                f"the backup {final} is made and verified, but removing old backups failed "
                f"({exc}); fix the permissions of {self.backup_dir} or remove them by hand"
            ) from None
        return BackupResult(final, sha256, size, counts, dumped - start, verify_s)

    def restore(self, path: Path, database: str, *, replace: bool = False) -> None:
        """Restore a checked dump into ``database``, new unless ``replace`` drops it first."""
        self._check_restorable(path)
        if replace:
            self.drop_database(database)
        elif self._database_exists(database):
            raise BackupError(
                f"database {database!r} already exists; restore into a new name, "
                "or pass replace=True to drop it first"
            )
        self._create_database(database)
        try:
            self._pg_restore(path, database)
        except BackupError as exc:
            with contextlib.suppress(BackupError):
                self.drop_database(database)
            message = f"{exc}\nThe partly restored database {database!r} was dropped."
            raise BackupError(message) from None

    def row_counts(self, database: str) -> dict[str, int]:
        """Rows of every table in the ``public`` schema of ``database``."""
        return parse_row_counts(self._psql(database, COUNT_SQL, "counting rows"))

    def query(self, database: str, sql: str) -> list[tuple[str, ...]]:
        """Rows of ``sql`` in ``database``, every value as text (NULL as an empty string)."""
        command = ["psql", "-X", "-q", "-A", "-t", "-F", "\x1f", "-v", "ON_ERROR_STOP=1"]
        command += ["-U", self.user, "-d", database, "-f", "-"]
        out = self._run(command, f"querying database {database!r}", data=sql.encode())
        return [tuple(line.split("\x1f")) for line in out.splitlines() if line]

    def drop_database(self, database: str) -> None:
        """Drop ``database`` if it exists, ending its sessions."""
        sql = 'DROP DATABASE IF EXISTS :"db" WITH (FORCE);'
        self._psql(MAINTENANCE_DB, sql, f"dropping database {database!r}", db=database)

    # --- create ---------------------------------------------------------------------------

    def _final_path(self, name: str) -> Path:
        """Check the name and the folder before anything is dumped."""
        if not BACKUP_NAME.fullmatch(name):
            raise BackupError(
                f"backup name {name!r} must be 1 to 200 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit; use a plainer release name"
            )
        final = self.backup_dir / f"{name}.dump"
        if final.exists() or checksum_file(final).exists():
            raise BackupError(
                f"a backup named {final.name} already exists in {self.backup_dir}; "
                "choose another name (backups are never overwritten)"
            )
        try:
            _make_private_dir(self.backup_dir)
        except OSError as exc:
            raise BackupError(
                f"cannot create the backup folder {self.backup_dir}: {exc.strerror}; "
                "create it or choose another folder"
            ) from None
        return final

    def _dump(self, tmp: Path) -> tuple[str, int, dict[str, int]]:
        """Stream pg_dump into ``tmp``; return its checksum, size and the snapshot's counts."""
        app = _app_name()
        command = ["bash", "-c", DUMP_SCRIPT, "bg-backup", self.database, self.user, COUNT_SQL]
        # psql gets longer than the whole command: on a hang, timeout stops everything.
        argv = self._exec([*command, str(math.ceil(self.timeout_s) + 5)], app)
        with tempfile.TemporaryFile() as errors:
            try:
                sha256, size, returncode = self._stream(argv, tmp, errors)
            except OSError as exc:
                self._stop(app)
                raise BackupError(_write_failed(tmp.parent, exc)) from None
            except BaseException:  # e.g. Ctrl-C: the dump would hold its locks until timeout
                self._stop(app)
                raise
            stderr = _read_stderr(errors)
        if returncode != 0:
            self._stop(app)
            what = f"pg_dump of database {self.database!r}"
            message = _failed(what, returncode, stderr, self.timeout_s)
            raise BackupError(f"{message}\nNo backup was written.")
        return sha256, size, parse_row_counts(stderr)

    def _stream(self, argv: list[str], tmp: Path, errors: IO[bytes]) -> tuple[str, int, int]:
        """Copy the command's stdout to a new 0600 file chunk by chunk, then fsync it."""
        digest = hashlib.sha256()
        size = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, self._popen(argv, errors) as proc:
            assert proc.stdout is not None
            timer = threading.Timer(self.timeout_s + HOST_GRACE_S, proc.kill)
            timer.start()
            try:
                while chunk := proc.stdout.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            except BaseException:
                proc.kill()
                raise
            finally:
                timer.cancel()
            returncode = proc.wait()
        return digest.hexdigest(), size, returncode

    def _popen(self, argv: list[str], errors: IO[bytes]) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors
            )
        except FileNotFoundError:
            raise BackupError(_no_docker(self.docker)) from None

    def _verify(self, dump: Path, expected: Mapping[str, int]) -> None:
        """Restore into a scratch database and compare its row counts with the snapshot's."""
        scratch = f"bg_verify_{secrets.token_hex(6)}"
        self._create_database(scratch)
        try:
            self._pg_restore(dump, scratch)
            restored = self.row_counts(scratch)
        except BaseException:
            with contextlib.suppress(BackupError):
                self.drop_database(scratch)
            raise
        self.drop_database(scratch)
        differences = _differences(expected, restored)
        if differences:
            raise BackupError(
                "the backup does not restore to the data it was taken from "
                f"(table: snapshot rows != restored rows): {'; '.join(differences)}. "
                "The dump was discarded; check the database logs and deploy again."
            )

    def _publish(self, tmp: Path, final: Path, sha256: str) -> None:
        """Write the sidecar, then rename the dump: a ``.dump`` never lacks its checksum."""
        try:
            write_checksum(final, sha256)
            os.replace(tmp, final)
            fsync_dir(final.parent)
        except OSError as exc:
            raise BackupError(_write_failed(final.parent, exc)) from None

    # --- restore --------------------------------------------------------------------------

    def _check_restorable(self, path: Path) -> None:
        if not path.is_file():
            raise BackupError(f"no backup file {path}; pass the path of an existing .dump")
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

    def _database_exists(self, database: str) -> bool:
        sql = "SELECT count(*) FROM pg_database WHERE datname = :'db';"
        out = self._psql(MAINTENANCE_DB, sql, f"looking up database {database!r}", db=database)
        return out.strip() != "0"

    def _create_database(self, database: str) -> None:
        # template0: a restore must not meet objects someone added to template1.
        sql = 'CREATE DATABASE :"db" TEMPLATE template0;'
        self._psql(MAINTENANCE_DB, sql, f"creating database {database!r}", db=database)

    def _pg_restore(self, dump: Path, database: str) -> None:
        command = ["pg_restore", "--no-owner", "--exit-on-error", "-U", self.user, "-d", database]
        try:
            with dump.open("rb") as stdin:
                self._run(command, f"pg_restore into database {database!r}", stdin=stdin)
        except OSError as exc:
            raise BackupError(f"cannot read the backup {dump}: {exc.strerror}") from None

    # --- running commands in the container --------------------------------------------------

    def _psql(self, database: str, sql: str, what: str, **variables: str) -> str:
        """Run ``sql`` (fed on stdin, so ``:'var'`` and ``:"var"`` quote the variables)."""
        command = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        command += ["-U", self.user, "-d", database]
        for key, value in variables.items():
            command += ["-v", f"{key}={value}"]
        return self._run([*command, "-f", "-"], what, data=sql.encode())

    def _run(
        self,
        command: list[str],
        what: str,
        *,
        stdin: IO[bytes] | None = None,
        data: bytes | None = None,
        timeout_s: float | None = None,
        stop_on_timeout: bool = True,
    ) -> str:
        """Run a short command in the container; a failure is a BackupError with its stderr."""
        timeout_s = timeout_s or self.timeout_s
        app = _app_name()
        interactive = stdin is not None or data is not None
        argv = self._exec(command, app, timeout_s=timeout_s, interactive=interactive)
        if stdin is None and data is None:
            stdin = subprocess.DEVNULL  # type: ignore[assignment]
        try:
            result = subprocess.run(
                argv,
                stdin=stdin,
                input=data,
                capture_output=True,
                timeout=timeout_s + HOST_GRACE_S,
                check=False,
            )
        except FileNotFoundError:
            raise BackupError(_no_docker(self.docker)) from None
        except subprocess.TimeoutExpired:
            if stop_on_timeout:
                self._stop(app)
            raise BackupError(f"{what} did not finish within {timeout_s:.0f}s") from None
        if result.returncode != 0:
            stderr = result.stderr.decode("utf-8", "replace")
            raise BackupError(_failed(what, result.returncode, stderr, timeout_s))
        return result.stdout.decode("utf-8", "replace")

    def _exec(
        self,
        command: list[str],
        app: str,
        *,
        timeout_s: float | None = None,
        interactive: bool = False,
    ) -> list[str]:
        """``docker exec`` of ``command``, bounded by ``timeout`` inside the container."""
        seconds = str(math.ceil(timeout_s or self.timeout_s))
        flags = ["-i"] if interactive else []
        return [
            *self.docker,
            "exec",
            *flags,
            "-e",
            f"PGAPPNAME={app}",
            self.container_id,
            *("timeout", seconds),  # no -k: a KILL would orphan processes (see DUMP_SCRIPT)
            *command,
        ]

    def _stop(self, app: str) -> None:
        """Best effort: end what is left of a failed command, so it holds no snapshot or lock.

        A killed ``docker exec`` client leaves its process running in the container, and a
        backend waiting for a lock does not notice that its client is gone.
        """
        with contextlib.suppress(BackupError):
            self._run(
                ["bash", "-c", STOP_SCRIPT, "bg-stop", app],
                "stopping leftover processes",
                timeout_s=CLEANUP_TIMEOUT_S,
                stop_on_timeout=False,
            )
        with contextlib.suppress(BackupError):
            self._psql(MAINTENANCE_DB, STOP_SQL, "ending leftover sessions", app=app)


def rotate(backup_dir: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` dumps and their checksums; return the removed dumps.

    Newest by modification time, then by name; files that are not ``*.dump`` stay untouched.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    dumps = [
        path
        for path in backup_dir.glob("*.dump")
        if path.is_file() and not path.name.startswith(".")
    ]
    dumps.sort(key=lambda path: (path.stat().st_mtime_ns, path.name), reverse=True)
    removed = dumps[keep:]
    for path in removed:
        path.unlink(missing_ok=True)
        checksum_file(path).unlink(missing_ok=True)
    return removed


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


def parse_row_counts(output: str) -> dict[str, int]:
    """The table -> rows mapping from the one ``BG-ROWCOUNTS {json}`` line of ``output``."""
    lines = [line for line in output.splitlines() if line.startswith(COUNTS_PREFIX)]
    if len(lines) != 1:
        raise BackupError(
            f"expected one row-count line from the database, got {len(lines)}:\n{_tail(output)}"
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


def _differences(expected: Mapping[str, int], actual: Mapping[str, int]) -> list[str]:
    tables = sorted(expected.keys() | actual.keys())
    return [
        f"{table}: {expected.get(table, 'missing')} != {actual.get(table, 'missing')}"
        for table in tables
        if expected.get(table) != actual.get(table)
    ]


def _app_name() -> str:
    """A unique PGAPPNAME, so the sessions and processes of one command can be found."""
    return f"bg_backup_{secrets.token_hex(6)}"


def _make_private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        return
    path.chmod(0o700)  # mkdir's mode is filtered by the umask


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _read_stderr(handle: IO[bytes], limit: int = 1 << 22) -> str:
    """A command's stderr from its file: the row counts line first, then anything it said."""
    handle.seek(0)
    return handle.read(limit).decode("utf-8", "replace")


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if not line.startswith(COUNTS_PREFIX)]
    return "\n".join(kept[-lines:]) or "(no output)"


def _failed(what: str, returncode: int, stderr: str, timeout_s: float) -> str:
    if returncode in (124, 137, -9):
        return (
            f"{what} did not finish within {timeout_s:.0f}s and was stopped; a session holding "
            "a lock can block it (see pg_locks), or raise the backup timeout for a database "
            f"this large:\n{_tail(stderr)}"
        )
    return f"{what} failed (exit {returncode}):\n{_tail(stderr)}"


def _write_failed(folder: Path, exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"not enough space for the backup in {folder} ({exc.strerror}); free space there "
            "or choose another backup folder, then deploy again. No partial file was left."
        )
    return (
        f"cannot write the backup in {folder}: {exc.strerror}; fix the folder "
        "(permissions, mount) or choose another one. No partial file was left."
    )


def _no_docker(docker: Sequence[str]) -> str:
    return f"cannot run {' '.join(docker)!r}: not installed or not on PATH; install the docker CLI"
