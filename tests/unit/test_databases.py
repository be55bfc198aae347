"""The database adapter of each kind, as the settings and the stack's environment give it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_bluegreen.adapters.databases import open_database
from pytest_bluegreen.adapters.databases.commands import CommandBackup
from pytest_bluegreen.adapters.databases.mysql import MySQLBackup
from pytest_bluegreen.adapters.databases.postgres import DatabaseBackup
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.errors import ConfigError
from tests.unit.reference import stack_config

ENV = {"POSTGRES_DB": "shop", "POSTGRES_USER": "app", "POSTGRES_PASSWORD": "pw"}


def config(env: dict[str, str] = ENV, **database: object) -> StackConfig:
    return stack_config(
        Path("/p"),
        base={},
        env=env,
        env_file=Path("/nonexistent/.env"),
        database={"backup_dir": Path("/b"), "keep_backups": 4, **database},
    )


def test_postgres_takes_its_name_and_user_from_the_stacks_environment() -> None:
    database = open_database(config(kind="postgres"), "c0ffee")
    assert isinstance(database, DatabaseBackup)
    assert (database.container_id, database.database, database.user) == ("c0ffee", "shop", "app")
    assert (database.backup_dir, database.keep) == (Path("/b"), 4)


def test_the_settings_name_and_user_win_and_the_callers_folder_and_bound_too() -> None:
    settings = config(kind="postgres", name="${POSTGRES_DB}_eu", user="ops")
    database = open_database(settings, "c0ffee", backup_dir=Path("/x"), keep=1, timeout_s=5)
    assert isinstance(database, DatabaseBackup)
    assert (database.database, database.user, database.backup_dir, database.keep) == (
        "shop_eu",
        "ops",
        Path("/x"),
        1,
    )
    assert database.timeout_s == 5


def test_mysql_reads_mariadbs_variables_and_works_as_root() -> None:
    settings = config(kind="mysql", env={"MARIADB_DATABASE": "shop", "MYSQL_DATABASE": "x"})
    database = open_database(settings, "c0ffee")
    assert isinstance(database, MySQLBackup)
    assert (database.container_id, database.database, database.user) == ("c0ffee", "shop", "root")


def test_commands_get_the_teams_two_commands() -> None:
    settings = config(
        kind="commands",
        name="shop",
        backup_command=("dump", "--all"),
        restore_command=("load", "{database}"),
    )
    database = open_database(settings, "c0ffee")
    assert isinstance(database, CommandBackup)
    assert (database.database, database.backup_command, database.restore_command) == (
        "shop",
        ("dump", "--all"),
        ("load", "{database}"),
    )


def test_no_database_has_no_adapter() -> None:
    with pytest.raises(ConfigError, match="'none' has no database adapter"):
        open_database(config(), "c0ffee")


def test_a_missing_name_is_one_clear_error() -> None:
    settings = stack_config(
        Path("/p"),
        base={},
        env={},
        env_file=Path("/nonexistent/.env"),
        database={"kind": "postgres"},
    )
    with pytest.raises(ConfigError, match="no database name for the postgres database"):
        open_database(settings, "c0ffee")
