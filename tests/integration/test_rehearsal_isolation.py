"""The migration rehearsal cannot reach the live database, whatever variable the app reads.

The new release here reads its database from ``DATABASE_URL``, which the Compose file points at
the live database (``db:5432/aptos``), and the settings name nothing for the rehearsal. Its
migration creates a marker table. The rehearsal's containers live on a private network where
``db`` is the scratch server, so the marker lands in the copy and never in the live database.

One throwaway stack (Compose project ``bgreh``, loopback ports 193xx), in file order: a first
deploy, the proof in this process, then a deploy whose rehearsal fails.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Final

import pytest
import requests
import tomli_w

from pytest_bluegreen.adapters.host import StackAdapters
from pytest_bluegreen.core.config import load_config
from tests.harness import (
    NOISY_P99,
    REPO,
    StackUser,
    Throwaway,
    merged,
    ports,
    short_home,
    throwaway_stack,
    write_settings,
)
from tests.images import ThrowawayImages

pytestmark = pytest.mark.integration

PROJECT: Final = "bgreh"
MARKER: Final = "bg_rehearsal_marker"
# The release's migration: a marker table through DATABASE_URL, then Django's own migrations.
MARKER_PY: Final = (
    "import os, psycopg2\n"
    "c = psycopg2.connect(os.environ['DATABASE_URL'], connect_timeout=5)\n"
    "c.autocommit = True\n"
    f"c.cursor().execute('CREATE TABLE IF NOT EXISTS {MARKER} (id int)')\n"
)
MIGRATE_PY: Final = (
    "import subprocess, sys\n"
    "sys.exit(subprocess.call(['python3', 'manage.py', 'migrate', '--noinput']))\n"
)
# The release's Compose change: Django's add-column migration, and the live database's URL.
DATABASE_URL_YAML: Final = (
    "    environment:\n"
    "      APTOS_MIGRATIONS: add-column\n"
    "      DATABASE_URL: postgresql://${POSTGRES_USER:-aptos_user}:${POSTGRES_PASSWORD}"
    "@db:5432/${POSTGRES_DB:-aptos}\n"
)


@pytest.fixture(scope="module")
def host(throwaway_images: ThrowawayImages) -> Iterator[StackUser]:
    """An empty host (no containers, no volumes), the migration and smoke gates, no load."""
    settings = {**NOISY_P99, "gate_suites": ["suites/migration", "suites/smoke"], "load_users": 0}
    with short_home("bgreh-") as home:
        throwaway = Throwaway(PROJECT, home, ports(19300), settings=settings)
        with throwaway_stack(throwaway, images=throwaway_images) as stack:
            yield StackUser(throwaway, stack)


def leftovers() -> list[str]:
    """Every container and network of a rehearsal of this project, running or not."""
    names = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, check=True
    ).stdout.split()
    networks = subprocess.run(
        ["docker", "network", "ls", "--format", "{{.Name}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [n for n in names + networks if n.startswith(f"{PROJECT}-rehearsal")]


def marker_in(user: StackUser) -> bool:
    database = user.database()
    found = database.query(database.database, f"SELECT to_regclass('public.{MARKER}')")
    return found == [(MARKER,)]  # NULL (no such table) is no row


def live_migrations(user: StackUser) -> list[tuple[str, ...]]:
    database = user.database()
    return database.query(
        database.database, "SELECT app, name FROM django_migrations ORDER BY 1, 2"
    )


def test_a_first_deploy_rehearses_on_a_scratch_server(host: StackUser) -> None:
    result = host.run("--bg-deploy", "--bg-release", "initial")
    print(result.stdout[-4000:], result.stderr[-2000:], sep="\n")
    assert result.returncode == 0
    record = host.last_record()
    assert (record.result, record.to_colour) == ("deployed", "blue")
    assert record.migration is not None
    assert record.migration["scratch_server"] == f"{PROJECT}-rehearsal-db"
    assert "aptos.0001_initial" in record.migration["applied"]
    assert leftovers() == []


def test_the_rehearsal_never_reaches_the_live_database(host: StackUser) -> None:
    """THE PROOF: the app's own DATABASE_URL names the live database; the copy gets the marker."""
    assert host.live() == "blue"
    before = live_migrations(host)
    assert not marker_in(host)
    release = host.idle_override("database-url", DATABASE_URL_YAML)
    own = host.throwaway.table()
    table = merged(
        own,
        {
            "compose_files": [*own["compose_files"], str(release)],
            "migrate_command": ["python3", "-c", MARKER_PY + MIGRATE_PY],
            "rehearsal_env": {},  # the settings name no variable: isolation by construction
        },
    )
    settings = write_settings(host.home / "proof.toml", table)
    config = load_config(REPO, settings, environ=host.throwaway.environ)
    compose_host = StackAdapters(config)
    compose_host.open_stack()
    backup = compose_host.database().backup("proof")
    rehearsal = compose_host.rehearsal(backup.path, "green", "blue")

    started = time.monotonic()
    rehearsal.prepare()
    try:
        assert rehearsal.migrate() == ["add_column.0001_add_builder_website"]
        scratch = rehearsal.scratch_database()
        assert scratch.query(f"SELECT to_regclass('public.{MARKER}')") == [(MARKER,)]
        assert ("add_column", "0001_add_builder_website") in scratch.query(
            "SELECT app, name FROM django_migrations"
        )
        # The live database: no marker, the same migrations.
        assert not marker_in(host)
        assert live_migrations(host) == before
        # The tools container is on the private network only, where "db" is the scratch server.
        networks = _inspect(f"{PROJECT}-rehearsal-tools", "{{json .NetworkSettings.Networks}}")
        assert list(json.loads(networks)) == [f"{PROJECT}-rehearsal"]
        with rehearsal.live_colour_on_copy() as live:
            response = requests.get(live.url + "/api/v1/aptos/", headers=live.headers, timeout=10)
            assert response.status_code == 200, response.text[-500:]
    finally:
        summary = rehearsal.summary()
        rehearsal.drop()
    took = time.monotonic() - started
    print(f"rehearsal seconds: {summary['seconds']} (all in {took:.1f}s)")
    assert leftovers() == []
    assert not marker_in(host)


def test_a_failing_rehearsal_leaves_nothing_and_the_live_database_as_it_was(
    host: StackUser,
) -> None:
    before = live_migrations(host)
    release = host.idle_override("database-url-fails", DATABASE_URL_YAML)
    failing = {"migrate_command": ["python3", "-c", MARKER_PY + "raise SystemExit(3)"]}
    fails = host.settings_with("fails", tomli_w.dumps(failing))
    result = host.run(
        "--bg-deploy", "--bg-release", "marker-fails", settings=fails, compose=[release]
    )
    print(result.stdout[-4000:], result.stderr[-2000:], sep="\n")
    assert result.returncode != 0
    record = host.last_record()
    assert record.result == "aborted"
    assert {s.name: s.outcome for s in record.stages}["migration"] == "failed"
    assert "test_migrations_apply_to_a_copy" in (record.error or "")
    assert leftovers() == []
    assert not marker_in(host)
    assert live_migrations(host) == before
    assert host.live() == "blue"


def _inspect(name: str, template: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", template, name], capture_output=True, text=True, check=True
    ).stdout
