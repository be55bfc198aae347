#!/usr/bin/env python3
"""The shop's schema migrations.

The files ``migrations/NNNN_words.sql`` are applied in the order of their names; each applied
one is recorded by name (without ``.sql``) in the table ``schema_migrations``.

    python3 migrate.py up        apply the pending migrations
    python3 migrate.py pending   print the pending migrations, one name per line

MariaDB commits every schema change at once, so a migration that fails halfway is not undone:
keep one change per file where that matters. Migrations only add (tables, nullable columns,
rows), so the release before them keeps working on the new schema.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import database
import pymysql
from pymysql.constants import CLIENT, ER

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FILE_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")
# Two `up` at the same time: the second waits for the first, then finds nothing to do.
LOCK_NAME = "schema_migrations"
LOCK_TIMEOUT_S = 300
CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB
"""


class MigrationError(Exception):
    pass


def migrations() -> list[Path]:
    """The migration files in the order they are applied."""
    files = sorted(MIGRATIONS.glob("*.sql"))
    numbers: dict[str, str] = {}
    for path in files:
        match = FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: a migration is named NNNN_words.sql")
        if match[1] in numbers:
            raise MigrationError(f"{path.name} and {numbers[match[1]]} have the same number")
        numbers[match[1]] = path.name
    return files


def applied(cursor: pymysql.cursors.Cursor) -> set[str]:
    """The names recorded in schema_migrations (none before the first ``up``)."""
    try:
        cursor.execute("SELECT name FROM schema_migrations")
    except pymysql.err.ProgrammingError as exc:
        if exc.args[0] == ER.NO_SUCH_TABLE:
            return set()
        raise
    return {row["name"] for row in cursor.fetchall()}


def pending(cursor: pymysql.cursors.Cursor) -> list[Path]:
    done = applied(cursor)
    return [path for path in migrations() if path.stem not in done]


def run_script(cursor: pymysql.cursors.Cursor, sql: str) -> None:
    """Run every statement of ``sql``; an error in any of them raises."""
    cursor.execute(sql)
    while cursor.nextset():
        pass


def up(connection: pymysql.connections.Connection) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK(%s, %s) AS locked", (LOCK_NAME, LOCK_TIMEOUT_S))
        if cursor.fetchone()["locked"] != 1:
            raise MigrationError(f"another migration held the lock for {LOCK_TIMEOUT_S} s")
        try:
            cursor.execute(CREATE_TABLE)
            todo = pending(cursor)
            for path in todo:
                print(f"applying {path.stem}", flush=True)
                run_script(cursor, path.read_text(encoding="utf-8"))
                cursor.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.stem,))
                connection.commit()
            print(f"applied {len(todo)} migration(s)" if todo else "no pending migrations")
        finally:
            # Closing the connection releases it too, should the connection be broken.
            with contextlib.suppress(pymysql.MySQLError):
                cursor.execute("DO RELEASE_LOCK(%s)", (LOCK_NAME,))


def main(argv: list[str]) -> int:
    if argv not in (["up"], ["pending"]):
        print("usage: migrate.py up|pending", file=sys.stderr)
        return 2
    try:
        # No read timeout: a schema change of a large table may take minutes.
        options = {"client_flag": CLIENT.MULTI_STATEMENTS, "read_timeout": None}
        with database.connect(**options) as connection:
            if argv == ["up"]:
                up(connection)
            else:
                with connection.cursor() as cursor:
                    for path in pending(cursor):
                        print(path.stem)
    except (MigrationError, pymysql.MySQLError, OSError) as exc:
        print(f"migrate: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
