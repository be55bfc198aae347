"""The pre-deploy database backup of PostgreSQL: a pg_dump of the live database, proven restorable.

A backup nobody restored is a hope, not a backup. So every dump is restored into a scratch
database and its row counts compared with counts taken in the very snapshot the dump was made
from; concurrent writes during the deploy cannot make that comparison fail. Only a verified dump
gets its final name, and only then are old dumps rotated away (:mod:`.dump_files`, shared with
the other database kinds, does the files and runs the bounded commands in the container).
"""

from __future__ import annotations

import contextlib
import math
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from pytest_bluegreen.adapters.databases.container_exec import CLEANUP_TIMEOUT_S, ContainerExec
from pytest_bluegreen.adapters.databases.dump_files import (
    COUNTS_PREFIX,
    DEFAULT_TIMEOUT_S,
    Dumped,
    check_counts,
    checksum_file,
    file_sha256,
    make_backup,
    parse_row_counts,
    restore_into,
    rotate,
    verify_checksum,
    write_checksum,
)
from pytest_bluegreen.core.errors import BackupError
from pytest_bluegreen.core.ports import BackupResult

__all__ = [
    "COUNTS_PREFIX",
    "DEFAULT_TIMEOUT_S",
    "BackupResult",
    "DatabaseBackup",
    "checksum_file",
    "file_sha256",
    "parse_row_counts",
    "rotate",
    "verify_checksum",
    "write_checksum",
]

SUFFIX: Final = ".dump"
TIMEOUT_HINT: Final = (
    "a session holding a lock can block it (see pg_locks), or raise the backup timeout for a "
    "database this large"
)
MAINTENANCE_DB: Final = "postgres"

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

STOP_SQL: Final = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :'app';"
)


class DatabaseBackup:
    """Backups of one database of a running PostgreSQL container, kept in ``backup_dir``.

    ``user`` connects over the container's local socket and needs the right to create and drop
    databases (the scratch copy of every verification).
    """

    __slots__ = ("_exec", "backup_dir", "container_id", "database", "docker", "keep", "user")

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
        self.container_id = container_id
        self.database = database
        self.user = user
        self.backup_dir = Path(backup_dir)
        self.keep = keep
        self.docker = tuple(docker)
        self._exec = ContainerExec(
            container_id,
            self.docker,
            timeout_s,
            marker_env="PGAPPNAME",
            timeout_hint=TIMEOUT_HINT,
            on_stop=self._end_sessions,
        )

    @property
    def timeout_s(self) -> float:
        return self._exec.timeout_s

    def backup(self, name: str) -> BackupResult:
        """Dump, verify by restoring, then publish as ``<name>.dump`` and rotate old dumps."""
        return make_backup(self.backup_dir, name, SUFFIX, self.keep, self._dump, self._verify)

    def restore(self, path: Path, database: str, *, replace: bool = False) -> None:
        """Restore a checked dump into ``database``, new unless ``replace`` drops it first."""
        restore_into(self, path, database, self._pg_restore, replace=replace)

    def row_counts(self, database: str) -> dict[str, int]:
        """Rows of every table in the ``public`` schema of ``database``."""
        return parse_row_counts(self._psql(database, COUNT_SQL, "counting rows"))

    def query(self, database: str, sql: str) -> list[tuple[str, ...]]:
        """Rows of ``sql`` in ``database``, every value as text (NULL as an empty string)."""
        command = ["psql", "-X", "-q", "-A", "-t", "-F", "\x1f", "-v", "ON_ERROR_STOP=1"]
        command += ["-U", self.user, "-d", database, "-f", "-"]
        out = self._exec.run(command, f"querying database {database!r}", data=sql.encode())
        return [tuple(line.split("\x1f")) for line in out.splitlines() if line]

    def drop_database(self, database: str) -> None:
        """Drop ``database`` if it exists, ending its sessions."""
        sql = 'DROP DATABASE IF EXISTS :"db" WITH (FORCE);'
        self._psql(MAINTENANCE_DB, sql, f"dropping database {database!r}", db=database)

    # --- create ---------------------------------------------------------------------------

    def _dump(self, tmp: Path) -> Dumped:
        """Stream pg_dump into ``tmp``; its checksum, size and the snapshot's counts."""
        command = ["bash", "-c", DUMP_SCRIPT, "bg-backup", self.database, self.user, COUNT_SQL]
        # psql gets longer than the whole command: on a hang, timeout stops everything.
        streamed = self._exec.stream([*command, str(math.ceil(self.timeout_s) + 5)], tmp)
        if streamed.returncode != 0:
            what = f"pg_dump of database {self.database!r}"
            message = self._exec.failed(what, streamed.returncode, streamed.stderr)
            raise BackupError(f"{message}\nNo backup was written.")
        counts = parse_row_counts(streamed.stderr)
        return Dumped(streamed.sha256, streamed.size_bytes, counts)

    def _verify(self, dump: Path, dumped: Dumped) -> None:
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
        check_counts(dumped.row_counts, restored)

    # --- restore --------------------------------------------------------------------------

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
                self._exec.run(command, f"pg_restore into database {database!r}", stdin=stdin)
        except OSError as exc:
            raise BackupError(f"cannot read the backup {dump}: {exc.strerror}") from None

    # --- running commands in the container --------------------------------------------------

    def _psql(
        self,
        database: str,
        sql: str,
        what: str,
        *,
        cleanup: bool = False,
        **variables: str,
    ) -> str:
        """Run ``sql`` (fed on stdin, so ``:'var'`` and ``:"var"`` quote the variables).

        A ``cleanup`` after a failure is bounded by the short clean-up timeout and stops nothing.
        """
        command = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        command += ["-U", self.user, "-d", database]
        for key, value in variables.items():
            command += ["-v", f"{key}={value}"]
        return self._exec.run(
            [*command, "-f", "-"],
            what,
            data=sql.encode(),
            timeout_s=CLEANUP_TIMEOUT_S if cleanup else None,
            stop_on_timeout=not cleanup,
        )

    def _end_sessions(self, app: str) -> None:
        """After a failed command: a backend waiting for a lock does not notice its client left."""
        self._psql(MAINTENANCE_DB, STOP_SQL, "ending leftover sessions", cleanup=True, app=app)
