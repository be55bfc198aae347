"""The database adapters by kind: which one backs up, restores and queries a database container.

One adapter per kind of the ``database`` setting, each in a module of its own, all with the
same constructor and methods (:class:`DatabaseAdapter`); the module of a kind is imported only
when a stack of that kind is opened.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol, cast

from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.errors import ConfigError
from pytest_bluegreen.core.ports import BackupResult

# kind -> (module, class): each class takes (container_id, database, user, backup_dir, keep).
ADAPTERS: Final = {
    "postgres": ("pytest_bluegreen.adapters.postgres", "DatabaseBackup"),
    "mysql": ("pytest_bluegreen.adapters.mysql", "MySQLBackup"),
    "commands": ("pytest_bluegreen.adapters.command_db", "CommandBackup"),
}
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


def open_database(
    config: StackConfig,
    container_id: str,
    *,
    backup_dir: Path | None = None,
    keep: int | None = None,
    timeout_s: float | None = None,
    docker: Sequence[str] = ("docker",),
) -> DatabaseAdapter:
    """The adapter of ``config.database`` for the database container ``container_id``.

    The database's name and user come from the settings (or the kind's usual variables of the
    stack's environment); ``backup_dir`` and ``keep`` default to the settings' too.
    """
    found = ADAPTERS.get(config.database)
    if found is None:
        raise ConfigError(
            f"bluegreen.database = {config.database!r} has no database adapter "
            f"(one of {', '.join(ADAPTERS)})"
        )
    module, name = found
    adapter = getattr(importlib.import_module(module), name)
    extra = {}
    if config.database == "commands":
        extra = {
            "backup_command": config.backup_command,
            "restore_command": config.restore_command,
        }
    return cast(
        DatabaseAdapter,
        adapter(
            container_id,
            config.database_name_value(),
            config.database_user_value(),
            config.backup_dir if backup_dir is None else backup_dir,
            config.keep_backups if keep is None else keep,
            tuple(docker),
            timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s,
            **extra,
        ),
    )
