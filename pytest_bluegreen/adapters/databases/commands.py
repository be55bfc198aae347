"""The pre-deploy backup of any database, by the team's own commands (``database = "commands"``).

``backup_command`` runs in the database service's container and writes the dump on stdout; it
is stored as it comes (compress it in the command if you want it compressed), checksummed,
refused when empty, and rotated like every backup (:mod:`.dump_files`). ``restore_command``
(optional) runs there too and reads a dump on stdin; ``{database}`` in any of its arguments is
replaced by the database to restore into, which the command must create, or replace when it
exists (e.g. ``["sh", "-c", 'dropdb --if-exists "$1" && createdb "$1" && pg_restore -d "$1"',
"sh", "{database}"]``).

What this kind can verify is less than the built-in kinds can, and it says so: with a restore
command, every backup is restored into ``<database>_bgverify`` and must restore without an
error, but its rows are not counted (this kind does not know how), and the scratch copy stays
in the server until the next verification replaces it (nor does it know how to drop one).
Without a restore command a backup is not verified by a restore at all: only its exit status,
its size and its checksum are checked. :class:`CommandBackupResult` carries which it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pytest_bluegreen.adapters.databases.container_exec import ContainerExec
from pytest_bluegreen.adapters.databases.dump_files import (
    DEFAULT_TIMEOUT_S,
    Dumped,
    check_restorable,
    make_backup,
)
from pytest_bluegreen.core.errors import BackupError
from pytest_bluegreen.core.ports import BackupResult

SUFFIX: Final = ".dump"
SCRATCH_SUFFIX: Final = "_bgverify"
PLACEHOLDER: Final = "{database}"
MARKER_ENV: Final = "BG_BACKUP"
TIMEOUT_HINT: Final = "raise the backup timeout, or make the command faster"


@dataclass(frozen=True, slots=True)
class CommandBackupResult(BackupResult):
    """A backup made by the team's command, and how far it was verified.

    ``row_counts`` is always empty: this kind cannot count rows.
    """

    verified_by_restore: bool = False
    verification: str = ""


def restore_argv(command: Sequence[str], database: str) -> list[str]:
    """``command`` with ``{database}`` replaced in every argument (no other braces touched)."""
    return [argument.replace(PLACEHOLDER, database) for argument in command]


def _is_argv(command: object) -> bool:
    return (
        isinstance(command, Sequence)
        and not isinstance(command, str)
        and all(isinstance(argument, str) for argument in command)
    )


def scratch_name(database: str) -> str:
    """The verification's scratch database: ``<database>_bgverify``."""
    return f"{database}{SCRATCH_SUFFIX}" if database else SCRATCH_SUFFIX.lstrip("_")


class CommandBackup:
    """Backups by ``backup_command`` in a running database container, kept in ``backup_dir``.

    The constructor is the other kinds' (``user`` is kept, unused), plus the two commands.
    """

    __slots__ = (
        "_exec",
        "backup_command",
        "backup_dir",
        "database",
        "keep",
        "restore_command",
        "user",
    )

    def __init__(
        self,
        container_id: str,
        database: str,
        user: str,
        backup_dir: Path,
        keep: int = 10,
        docker: Sequence[str] = ("docker",),
        *,
        backup_command: Sequence[str],
        restore_command: Sequence[str] = (),
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        if not _is_argv(backup_command) or not backup_command:
            raise ValueError("backup_command must be a non-empty list of strings (an argv)")
        if not _is_argv(restore_command):
            raise ValueError("restore_command must be a list of strings (an argv)")
        if restore_command and not any(PLACEHOLDER in arg for arg in restore_command):
            # Else a verification would restore into whatever the command names: the live one.
            raise ValueError(
                f"restore_command must name the database it restores into as {PLACEHOLDER} "
                "in an argument; without it, verifying a backup would restore over the database "
                "the command names"
            )
        self.database = database
        self.user = user
        self.backup_dir = Path(backup_dir)
        self.keep = keep
        self.backup_command = tuple(backup_command)
        self.restore_command = tuple(restore_command)
        self._exec = ContainerExec(
            container_id, docker, timeout_s, marker_env=MARKER_ENV, timeout_hint=TIMEOUT_HINT
        )

    @property
    def container_id(self) -> str:
        return self._exec.container_id

    @property
    def timeout_s(self) -> float:
        return self._exec.timeout_s

    @property
    def verified_by_restore(self) -> bool:
        """Whether backups are verified by a restore (only with a restore command)."""
        return bool(self.restore_command)

    def backup(self, name: str) -> CommandBackupResult:
        """Run the backup command, check, verify by restoring when it can, publish, rotate."""
        made = make_backup(self.backup_dir, name, SUFFIX, self.keep, self._dump, self._verify)
        if self.restore_command:
            scratch = scratch_name(self.database)
            verification = (
                f"restored into {scratch!r} by restore_command without an error; rows not "
                f"compared (this kind cannot count them), and {scratch!r} stays in the server"
            )
        else:
            verification = (
                "NOT verified by a restore (no restore_command): only its exit status, "
                "size and checksum were checked"
            )
        return CommandBackupResult(
            made.path,
            made.sha256,
            made.size_bytes,
            made.row_counts,
            made.dump_s,
            made.verify_s,
            verified_by_restore=self.verified_by_restore,
            verification=verification,
        )

    def restore(self, path: Path, database: str, *, replace: bool = False) -> None:
        """Feed a checked dump to the restore command, ``{database}`` being ``database``.

        Whether an existing database is replaced is the restore command's own doing: this kind
        cannot look a database up, so ``replace`` changes nothing here.
        """
        del replace
        if not self.restore_command:
            raise BackupError(
                "no restore_command is set, so this database kind cannot restore a backup; "
                "set restore_command (it reads a dump on stdin, {database} names the target)"
            )
        check_restorable(path)
        self._restore(path, database)

    def row_counts(self, database: str) -> dict[str, int]:
        raise BackupError(self._cannot("count the rows of", database))

    def query(self, database: str, sql: str) -> list[tuple[str, ...]]:
        raise BackupError(self._cannot("query", database))

    def drop_database(self, database: str) -> None:
        raise BackupError(self._cannot("drop", database))

    # --- create ---------------------------------------------------------------------------

    def _dump(self, tmp: Path) -> Dumped:
        """Stream the backup command's stdout into ``tmp``, as it comes."""
        streamed = self._exec.stream(self.backup_command, tmp)
        what = f"the backup_command {self.backup_command[0]!r}"
        if streamed.returncode != 0:
            message = self._exec.failed(what, streamed.returncode, streamed.stderr)
            raise BackupError(f"{message}\nNo backup was written.")
        if streamed.size_bytes == 0:
            raise BackupError(
                f"{what} succeeded but wrote nothing on stdout; it must write the dump there "
                "(not to a file). No backup was written."
            )
        return Dumped(streamed.sha256, streamed.size_bytes, {})

    def _verify(self, dump: Path, dumped: Dumped) -> None:
        """Restore into the scratch database when there is a restore command."""
        if self.restore_command:
            self._restore(dump, scratch_name(self.database))

    def _restore(self, dump: Path, database: str) -> None:
        command = restore_argv(self.restore_command, database)
        what = f"the restore_command into database {database!r}"
        try:
            with dump.open("rb") as stdin:
                self._exec.run(command, what, stdin=stdin)
        except OSError as exc:
            raise BackupError(f"cannot read the backup {dump}: {exc.strerror}") from None

    def _cannot(self, action: str, database: str) -> str:
        return (
            f'cannot {action} database {database!r}: the "commands" database kind only runs '
            "the backup and restore commands; use database = postgres or mysql for that"
        )
