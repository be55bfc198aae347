"""The database adapters by kind: which one backs up, restores and queries a database container.

One adapter per kind of the ``database`` setting, each in a module of its own, all with the
same constructor and methods (:class:`DatabaseAdapter`); the module of a kind is imported only
when a stack of that kind is opened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.errors import ConfigError
from pytest_bluegreen.core.ports import BackupResult

# The port a kind's server listens on, for ``{port}`` in ``rehearsal_env`` ("" when unknown).
DEFAULT_PORTS: Final = {"postgres": "5432", "mysql": "3306"}
DEFAULT_TIMEOUT_S: Final = 600.0


class DatabaseAdapter(Protocol):
    """One database of a running database container: its backups, restores and queries."""

    @property
    def container_id(self) -> str: ...
    @property
    def database(self) -> str: ...
    def backup(self, name: str) -> BackupResult: ...
    def restore(self, path: Path, database: str, *, replace: bool = False) -> None: ...
    def query(self, database: str, sql: str) -> list[tuple[str, ...]]: ...
    def drop_database(self, database: str) -> None: ...
    def row_counts(self, database: str) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class Opening:
    """What every kind's constructor takes, as the settings and the caller give it."""

    config: StackConfig
    container_id: str
    backup_dir: Path
    keep: int
    timeout_s: float
    docker: tuple[str, ...]

    @property
    def database(self) -> str:
        return self.config.database_name_value()

    @property
    def user(self) -> str:
        return self.config.database_user_value()


def _postgres(o: Opening) -> DatabaseAdapter:
    from pytest_bluegreen.adapters.databases.postgres import DatabaseBackup

    return DatabaseBackup(
        o.container_id, o.database, o.user, o.backup_dir, o.keep, o.docker, timeout_s=o.timeout_s
    )


def _mysql(o: Opening) -> DatabaseAdapter:
    from pytest_bluegreen.adapters.databases.mysql import MySQLBackup

    return MySQLBackup(
        o.container_id, o.database, o.user, o.backup_dir, o.keep, o.docker, timeout_s=o.timeout_s
    )


def _commands(o: Opening) -> DatabaseAdapter:
    from pytest_bluegreen.adapters.databases.commands import CommandBackup

    return CommandBackup(
        o.container_id,
        o.database,
        o.user,
        o.backup_dir,
        o.keep,
        o.docker,
        backup_command=o.config.database.backup_command,
        restore_command=o.config.database.restore_command,
        timeout_s=o.timeout_s,
    )


# kind -> its adapter, each module imported only when a stack of that kind is opened.
ADAPTERS: Final[dict[str, Callable[[Opening], DatabaseAdapter]]] = {
    "postgres": _postgres,
    "mysql": _mysql,
    "commands": _commands,
}


def open_database(
    config: StackConfig,
    container_id: str,
    *,
    backup_dir: Path | None = None,
    keep: int | None = None,
    timeout_s: float | None = None,
    docker: Sequence[str] = ("docker",),
) -> DatabaseAdapter:
    """The adapter of ``config.database.kind`` for the database container ``container_id``.

    The database's name and user come from the settings (or the kind's usual variables of the
    stack's environment); ``backup_dir`` and ``keep`` default to the settings' too.
    """
    adapter = ADAPTERS.get(config.database.kind)
    if adapter is None:
        raise ConfigError(
            f"bluegreen.database.kind = {config.database.kind!r} has no database adapter "
            f"(one of {', '.join(ADAPTERS)})"
        )
    return adapter(
        Opening(
            config,
            container_id,
            config.database.backup_dir if backup_dir is None else backup_dir,
            config.database.keep_backups if keep is None else keep,
            DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s,
            tuple(docker),
        )
    )
