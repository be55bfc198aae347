"""The shop's database connection, from ``DATABASE_URL`` (``mysql://user:password@host:port/name``).

Characters of the user or password that have a meaning in a URL (``@ : / ? #`` and ``%``) must be
percent-encoded there.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql
import pymysql.cursors


def settings(url: str) -> dict[str, Any]:
    """The arguments of ``pymysql.connect`` that ``url`` describes."""
    parts = urlsplit(url)
    if parts.scheme != "mysql" or not parts.hostname or not parts.path.strip("/"):
        raise ValueError("DATABASE_URL must look like mysql://user:password@host:3306/name")
    return {
        "host": parts.hostname,
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.strip("/")),
    }


def connect(**options: Any) -> pymysql.connections.Connection:
    """A new connection to the shop's database; rows come back as dicts.

    The timeouts are short, so that a request never waits long for a database that hangs (the
    API answers 503 instead); ``options`` override them, as for a long migration.
    """
    arguments = {
        **settings(os.environ["DATABASE_URL"]),
        "charset": "utf8mb4",
        "cursorclass": pymysql.cursors.DictCursor,
        "connect_timeout": 3,
        "read_timeout": 5,
        "write_timeout": 5,
    }
    return pymysql.connect(**{**arguments, **options})
