"""The pre-deploy backup of MySQL and MariaDB: a mysqldump of the live database, proven restorable.

Like :mod:`.postgres`: the dump (``mariadb-dump`` or ``mysqldump``, whichever the container has,
with ``--single-transaction --routines --triggers``) is streamed to the host, gzip'd there, and
restored into a scratch database ``<db>_bgverify`` of the same server, whose row counts must be
the ones of the dump's snapshot; only then is it published as ``<name>.sql.gz`` (plain
``zcat | mariadb`` restores it by hand) and are old backups rotated away.

Row counts from the dump's own snapshot. MySQL cannot hand a snapshot to another session (there
is no ``pg_export_snapshot``), and a count in a session of its own, even one that starts its
``START TRANSACTION WITH CONSISTENT SNAPSHOT`` a moment before or after mysqldump's, sees every
row committed in between: under concurrent writes its counts would not be the dump's, and the
comparison would fail for nothing. So the snapshots are made equal the way mydumper and
``mysqldump --master-data`` do it. A counting session takes ``FLUSH TABLES WITH READ LOCK``
(nothing commits while it is held), opens its consistent snapshot, starts the dump, waits until
the dump has opened its own transaction (its ``--verbose`` progress has passed "Starting
transaction"), then unlocks and counts in its snapshot while the dump runs. Both snapshots see
the same committed data, so the counts are exact for transactional (InnoDB) tables. Honest
limits: writers wait for as long as the lock is held (the dump client's start, milliseconds);
taking the lock waits for running statements and ``LOCK TABLES`` sessions, bounded by
``lock_wait_s`` (then the backup fails with one line saying so, and nothing was blocked longer);
a non-transactional (MyISAM, Aria) table written during the dump may not restore to the counted
rows, and such a backup fails verification rather than pass unchecked.

Credentials never appear on a command line (the host's ``ps`` would show them): every command
runs as a shell in the database container that reads the container's own environment, the
official images' ``MARIADB_ROOT_PASSWORD`` or ``MYSQL_ROOT_PASSWORD`` (or their ``*_FILE``
variants) for root, into ``MYSQL_PWD``. Commands are bounded as in :mod:`.container_exec`.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pytest_bluegreen.adapters.databases.container_exec import CLEANUP_TIMEOUT_S, ContainerExec
from pytest_bluegreen.adapters.databases.dump_files import (
    CHUNK,
    COUNTS_PREFIX,
    DEFAULT_TIMEOUT_S,
    Dumped,
    check_counts,
    make_backup,
    parse_row_counts,
    restore_into,
)
from pytest_bluegreen.core.errors import BackupError
from pytest_bluegreen.core.ports import BackupResult

SUFFIX: Final = ".sql.gz"
SCRATCH_SUFFIX: Final = "_bgverify"
MAX_NAME: Final = 64  # MySQL's longest database name
# zlib level 3 on the host, measured: 2.5x faster than level 6 (11 ns against 29 ns a byte of
# text), 13% larger on text, 2% on hex-heavy rows; a dump must not wait on the host's CPU.
GZIP_LEVEL: Final = 3
GZIP_WBITS: Final = 16 + zlib.MAX_WBITS  # a gzip header, so that zcat and gunzip read it
LOCK_WAIT_S: Final = 10.0
MARKER_ENV: Final = "BG_BACKUP"
DUMP_END: Final = b"\n-- Dump completed"  # mysqldump's last comment: the dump ran to its end
LOCK_WAIT_ERROR: Final = "Lock wait timeout exceeded"
TIMEOUT_HINT: Final = (
    "a long query or a DDL statement can block it (see SHOW PROCESSLIST), or raise the backup "
    "timeout for a database this large"
)
CLIENT_OPTIONS: Final = ("--batch", "--skip-column-names", "--default-character-set=utf8mb4")

# Sets MYSQL_PWD from the container's own environment for $user (root: the root password of
# the official MariaDB or MySQL image; the image's MARIADB_USER/MYSQL_USER: that user's).
# Without one, the client tries no password (e.g. root over the socket as the OS root user).
CREDENTIALS: Final = r"""
pw='' pwfile=''
if [ "$user" = root ]; then
  pw=${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}
  pwfile=${MARIADB_ROOT_PASSWORD_FILE:-${MYSQL_ROOT_PASSWORD_FILE:-}}
elif [ "$user" = "${MARIADB_USER:-}" ] || [ "$user" = "${MYSQL_USER:-}" ]; then
  pw=${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}
  pwfile=${MARIADB_PASSWORD_FILE:-${MYSQL_PASSWORD_FILE:-}}
fi
if [ -z "$pw" ] && [ -n "$pwfile" ]; then pw=$(cat -- "$pwfile") || exit 1; fi
if [ -n "$pw" ]; then MYSQL_PWD=$pw; export MYSQL_PWD; fi
unset pw pwfile
"""

# Arguments: user, then the client command to run with that user's password.
CLIENT_SCRIPT: Final = "user=$1\nshift\n" + CREDENTIALS + 'exec "$@"\n'

# Which client and dump programs the container has, and whether the dump program is MySQL's
# (whose --set-gtid-purged must be OFF for a dump restored into the same server).
TOOLS_SCRIPT: Final = r"""
client=$(command -v mariadb || command -v mysql || true)
dumper=$(command -v mariadb-dump || command -v mysqldump || true)
echo "client=$client"
echo "dumper=$dumper"
if [ -n "$dumper" ] && "$dumper" --help 2>/dev/null | grep -q -e --set-gtid-purged; then
  echo "gtid=yes"
fi
"""

# Prepares bg_count: one line, "BG-ROWCOUNTS {json}", with the rows of every table of the
# session's database. Table names go in as hex literals and backtick-quoted identifiers, so no
# sql_mode (NO_BACKSLASH_ESCAPES, ANSI_QUOTES) changes their meaning; JSON escapes the rest.
PREPARE_COUNT_SQL: Final = (
    "SET SESSION group_concat_max_len = 16777216; "
    "SET @bg_count = (SELECT IF(COUNT(*) = 0, "
    f"'SELECT ''{COUNTS_PREFIX}{{}}''', "
    f"CONCAT('SELECT CONCAT(''{COUNTS_PREFIX}'', JSON_OBJECT(', "
    "GROUP_CONCAT(CONCAT('CONVERT(0x', HEX(TABLE_NAME), ' USING utf8mb4), "
    "(SELECT COUNT(*) FROM `', REPLACE(TABLE_NAME, '`', '``'), '`)') SEPARATOR ', '), '))')) "
    "FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
    "AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')); "
    "PREPARE bg_count FROM @bg_count;"
)
COUNT_SQL: Final = f"{PREPARE_COUNT_SQL} EXECUTE bg_count; DEALLOCATE PREPARE bg_count;"

# Counts and dump from equal snapshots (see the module's docstring). A client coprocess holds
# the lock and then the counting transaction; the dump goes to stdout, the counts and the dump's
# errors (not its progress lines) to stderr. Arguments: user, database, seconds to wait for the
# lock, seconds to wait for the client, the client program, the count preparation; then the dump
# command. Ending the client (on any path, its stdin closes) ends its session and the lock.
DUMP_SCRIPT: Final = (
    r"""
set -euo pipefail
user=$1 db=$2 lock_s=$3 wait_s=$4 client=$5 prepare_sql=$6
shift 6
"""
    + CREDENTIALS
    + r"""
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
coproc SQL {
  exec "$client" --unbuffered --batch --skip-column-names --raw \
    --default-character-set=utf8mb4 -u "$user" -- "$db"
}
to=${SQL[1]} from=${SQL[0]}
reply=''
ask() {
  printf '%s\nSELECT '\''%s'\'';\n' "$1" "$marker" >&"$to"
  reply=''
  local line
  while IFS= read -r -t "$wait_s" -u "$from" line; do
    if [[ $line == "$marker" ]]; then return 0; fi
    reply+=$line
  done
  echo "bg-backup: the counting session ended (its error is above)" >&2
  return 1
}
errors() {
  local line
  while IFS= read -r line; do
    if [[ $line != '-- '* ]]; then printf '%s\n' "$line" >&2; fi
  done
}
ask "SET SESSION lock_wait_timeout = $lock_s;"
ask 'SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ;'
ask 'FLUSH TABLES WITH READ LOCK;'
ask 'START TRANSACTION WITH CONSISTENT SNAPSHOT;'
ask "$prepare_sql"
exec {out}>&1
exec {progress}< <(exec "$@" 2>&1 >&"$out")
dumper=$!
started='' snapshot=''
while IFS= read -r -t "$wait_s" -u "$progress" line; do
  if [[ $line != '-- '* ]]; then printf '%s\n' "$line" >&2; fi
  if [[ -n $started ]]; then snapshot=1; break; fi
  if [[ $line == '-- Starting transaction...' ]]; then started=1; fi
done
ask 'UNLOCK TABLES;'
errors <&"$progress" &
if [[ -n $snapshot ]]; then
  ask 'EXECUTE bg_count;'
  printf '%s\n' "$reply" >&2
fi
status=0
wait "$dumper" || status=$?
if (( status == 0 )) && [[ -z $snapshot ]]; then
  echo "bg-backup: the dump ended before its transaction had started" >&2
  status=1
fi
if (( status == 0 )); then ask 'COMMIT;'; fi
exit "$status"
"""
)


@dataclass(frozen=True, slots=True)
class Tools:
    """The client and dump programs of a database container."""

    client: str  # mariadb or mysql
    dumper: str  # mariadb-dump or mysqldump
    gtid_option: bool  # MySQL's mysqldump: --set-gtid-purged exists

    @property
    def dumper_name(self) -> str:
        return self.dumper.rpartition("/")[2]


def parse_tools(output: str) -> Tools:
    """The programs :data:`TOOLS_SCRIPT` found; a BackupError when a client or dump is missing."""
    found = dict(line.partition("=")[::2] for line in output.splitlines() if "=" in line)
    client, dumper = found.get("client", ""), found.get("dumper", "")
    if not client or not dumper:
        missing = " and ".join(
            what
            for what, path in (("mariadb or mysql", client), ("mariadb-dump or mysqldump", dumper))
            if not path
        )
        raise BackupError(
            f"the database container has no {missing}; the mysql database kind runs them "
            "inside the db service's container, so use an image with the client programs "
            "(the official mariadb and mysql images have them)"
        )
    return Tools(client, dumper, found.get("gtid") == "yes")


def dump_command(tools: Tools, user: str, database: str) -> list[str]:
    """The dump program's argv: one database, with routines and triggers, in one transaction."""
    command = [tools.dumper, "--single-transaction", "--routines", "--triggers"]
    # --hex-blob: binary columns as text; --verbose: the progress DUMP_SCRIPT waits on;
    # --no-tablespaces: MySQL 8 would want the PROCESS privilege for them, and one database
    # has none of its own.
    command += ["--hex-blob", "--default-character-set=utf8mb4", "--no-tablespaces", "--verbose"]
    if tools.gtid_option:
        command.append("--set-gtid-purged=OFF")  # else the dump sets the server's GTIDs
    return [*command, "-u", user, "--", database]


def quote_identifier(name: str) -> str:
    """``name`` as a MySQL identifier: in backticks, a backtick doubled."""
    if not name or "\0" in name:
        raise BackupError(f"{name!r} is not a usable database name")
    return "`" + name.replace("`", "``") + "`"


def scratch_name(database: str) -> str:
    """The verification's scratch database: ``<database>_bgverify``, within 64 characters."""
    return database[: MAX_NAME - len(SCRATCH_SUFFIX)] + SCRATCH_SUFFIX


_UNESCAPE: Final = {"n": "\n", "t": "\t", "0": "\0", "\\": "\\", "b": "\b", "r": "\r"}


def unescape_field(field: str) -> str:
    r"""A value of the batch output as it was: its ``\n``, ``\t``, ``\0``, ``\\`` undone."""
    if "\\" not in field:
        return field
    out: list[str] = []
    chars = iter(field)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            out.append(_UNESCAPE.get(following, following))
        else:
            out.append(char)
    return "".join(out)


def parse_batch(output: str) -> list[tuple[str, ...]]:
    """Rows of the client's ``--batch --skip-column-names`` output, values unescaped."""
    return [
        tuple(unescape_field(field) for field in line.split("\t"))
        for line in output.splitlines()
        if line
    ]


def gunzip_chunks(path: Path) -> Iterator[bytes]:
    """The SQL of a ``.sql.gz`` dump, chunk by chunk; a BackupError if it is not whole."""
    decompressor = zlib.decompressobj(GZIP_WBITS)
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                yield decompressor.decompress(chunk)
        yield decompressor.flush()
    except zlib.error as exc:
        raise BackupError(f"{path} is not a readable gzip'd dump ({exc})") from None
    except OSError as exc:
        raise BackupError(f"cannot read the backup {path}: {exc.strerror}") from None
    if not decompressor.eof:
        raise BackupError(f"{path} ends before its gzip stream does: the file is truncated")


class MySQLBackup:
    """Backups of one database of a running MySQL or MariaDB container, kept in ``backup_dir``.

    ``user`` ("" for root) connects over the container's local socket, with the password of
    the container's environment, and needs the RELOAD privilege (the brief read lock) and the
    rights to create and drop databases (the scratch copy of every verification).
    """

    __slots__ = ("_exec", "_tools", "backup_dir", "database", "keep", "lock_wait_s", "user")

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
        lock_wait_s: float = LOCK_WAIT_S,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        if lock_wait_s <= 0:
            raise ValueError(f"lock_wait_s must be positive, got {lock_wait_s}")
        quote_identifier(database)
        self.database = database
        self.user = user or "root"
        self.backup_dir = Path(backup_dir)
        self.keep = keep
        self.lock_wait_s = lock_wait_s
        self._exec = ContainerExec(
            container_id,
            docker,
            timeout_s,
            marker_env=MARKER_ENV,
            timeout_hint=TIMEOUT_HINT,
        )
        self._tools: Tools | None = None

    @property
    def container_id(self) -> str:
        return self._exec.container_id

    @property
    def timeout_s(self) -> float:
        return self._exec.timeout_s

    @property
    def tools(self) -> Tools:
        """The container's client and dump programs, looked up on first use."""
        if self._tools is None:
            output = self._exec.run(
                ["sh", "-c", TOOLS_SCRIPT],
                "looking for the MySQL client programs",
                timeout_s=CLEANUP_TIMEOUT_S,
            )
            self._tools = parse_tools(output)
        return self._tools

    def backup(self, name: str) -> BackupResult:
        """Dump, verify by restoring, then publish as ``<name>.sql.gz`` and rotate old dumps."""
        return make_backup(self.backup_dir, name, SUFFIX, self.keep, self._dump, self._verify)

    def restore(self, path: Path, database: str, *, replace: bool = False) -> None:
        """Restore a checked dump into ``database``, new unless ``replace`` drops it first."""
        restore_into(self, path, database, self._load, replace=replace)

    def row_counts(self, database: str) -> dict[str, int]:
        """Rows of every table (not view, not sequence) of ``database``."""
        out = self._client(COUNT_SQL, "counting rows", database, raw=True)
        return parse_row_counts(out)

    def query(self, database: str, sql: str) -> list[tuple[str, ...]]:
        """Rows of ``sql`` in ``database``, every value as text (NULL as the text ``NULL``)."""
        return parse_batch(self._client(sql, f"querying database {database!r}", database))

    def drop_database(self, database: str) -> None:
        """Drop ``database`` if it exists, ending its sessions first (else DROP waits on them)."""
        target = quote_identifier(database)
        sessions = (
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
            f"AND CAST(DB AS BINARY) = X'{database.encode().hex()}';"
        )
        with contextlib.suppress(BackupError):
            listed = parse_batch(self._client(sessions, "listing sessions", cleanup=True))
            ids = [row[0] for row in listed if row[0].isdigit()]
            if ids:
                kills = " ".join(f"KILL CONNECTION {i};" for i in ids)
                self._client(kills, "ending sessions", force=True, cleanup=True)
        sql = f"SET SESSION lock_wait_timeout = 30; DROP DATABASE IF EXISTS {target};"
        self._client(sql, f"dropping database {database!r}")

    # --- create ---------------------------------------------------------------------------

    def _dump(self, tmp: Path) -> Dumped:
        """Stream the dump, gzip'd, into ``tmp``; its checksum, size and the snapshot's counts."""
        tools = self.tools
        lock_s = str(max(1, math.ceil(self.lock_wait_s)))
        # The client gets longer than the whole command: on a hang, timeout stops everything.
        wait_s = str(math.ceil(self.timeout_s) + 5)
        command = ["bash", "-c", DUMP_SCRIPT, "bg-backup", self.user, self.database, lock_s]
        command += [wait_s, tools.client, PREPARE_COUNT_SQL]
        command += dump_command(tools, self.user, self.database)
        encoder = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
        streamed = self._exec.stream(command, tmp, encoder=encoder, tail_bytes=256)
        what = f"{tools.dumper_name} of database {self.database!r}"
        if streamed.returncode != 0:
            if LOCK_WAIT_ERROR in streamed.stderr:
                message = (
                    f"{what} could not take the brief global read lock within {lock_s}s: a long "
                    "query, a LOCK TABLES session or a DDL statement holds tables (see SHOW "
                    "PROCESSLIST); writes waited at most that long. Deploy again when it is done."
                )
            else:
                message = self._exec.failed(what, streamed.returncode, streamed.stderr)
            raise BackupError(f"{message}\nNo backup was written.")
        if DUMP_END not in streamed.tail:
            raise BackupError(
                f"{what} ended without its '-- Dump completed' line: the dump is not whole. "
                "No backup was written."
            )
        counts = parse_row_counts(streamed.stderr)
        return Dumped(streamed.sha256, streamed.size_bytes, counts)

    def _verify(self, dump: Path, dumped: Dumped) -> None:
        """Restore into ``<db>_bgverify`` and compare its row counts with the snapshot's."""
        scratch = scratch_name(self.database)
        if scratch == self.database:
            raise BackupError(f"cannot verify into {scratch!r}: it is the live database")
        quoted = quote_identifier(scratch)
        drop = f"DROP DATABASE IF EXISTS {quoted};"
        # One left by a verification that was killed goes first; nobody else uses it.
        self._client(f"{drop} CREATE DATABASE {quoted};", f"creating database {scratch!r}")
        try:
            self._load(dump, scratch)
            restored = self.row_counts(scratch)
        except BaseException:
            with contextlib.suppress(BackupError):
                self._client(drop, f"dropping database {scratch!r}", cleanup=True)
            raise
        self._client(drop, f"dropping database {scratch!r}")
        check_counts(dumped.row_counts, restored)

    # --- restore --------------------------------------------------------------------------

    def _database_exists(self, database: str) -> bool:
        sql = (
            "SELECT COUNT(*) FROM information_schema.SCHEMATA "
            f"WHERE CAST(SCHEMA_NAME AS BINARY) = X'{database.encode().hex()}';"
        )
        out = self._client(sql, f"looking up database {database!r}")
        return out.strip() != "0"

    def _create_database(self, database: str) -> None:
        sql = f"CREATE DATABASE {quote_identifier(database)};"
        self._client(sql, f"creating database {database!r}")

    def _load(self, dump: Path, database: str) -> None:
        """Feed the dump's SQL, decompressed on the host, to a client on ``database``."""
        command = self._client_command(database)
        what = f"restoring into database {database!r}"
        self._exec.run(command, what, chunks=gunzip_chunks(dump))

    # --- running the client in the container ------------------------------------------------

    def _client_command(
        self, database: str | None = None, *, raw: bool = False, force: bool = False
    ) -> list[str]:
        """The client, with the password from the container's environment, never from argv."""
        command = ["sh", "-c", CLIENT_SCRIPT, "bg-mysql", self.user, self.tools.client]
        command += CLIENT_OPTIONS
        command += ["--raw"] if raw else []
        command += ["--force"] if force else []
        command += ["-u", self.user]
        return [*command, "--", database] if database else command

    def _client(
        self,
        sql: str,
        what: str,
        database: str | None = None,
        *,
        raw: bool = False,
        force: bool = False,
        cleanup: bool = False,
    ) -> str:
        """Run ``sql`` (fed on stdin) and return the client's output."""
        command = self._client_command(database, raw=raw, force=force)
        return self._exec.run(
            command,
            what,
            data=sql.encode(),
            timeout_s=CLEANUP_TIMEOUT_S if cleanup else None,
            stop_on_timeout=not cleanup,
        )
