"""Migration rehearsal: the new release's migrations on a copy of the database, first.

A gate of the deploy's ``migration`` stage (``bluegreen:migration``), before the real database
is migrated: the backup just taken is restored into a scratch database server on a private
network, the new release's migrations (``migrate_command``) run there, nothing is left pending
(``migration_pending_command``), the models match the migrations (``migration_check_command``),
and the live colour's own image, started on the migrated copy, still answers ``rehearsal_paths``
(default: the critical paths) on ``rehearsal_port``. A release that drops or renames something
the live colour reads fails here, and the real database is never touched (expand now, contract
in a later release).

Not applicable, and the deploy goes on, without a database or a migrate command, for a check
whose command or port the settings do not give, and for the live colour on a first deploy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import pytest
import requests

from pytest_bluegreen import (
    BluegreenError,
    LiveColourOnCopy,
    MigrationRehearsal,
    StackConfig,
    not_applicable,
)

pytestmark = pytest.mark.bluegreen_stage("migration")
TIMEOUT_S: Final = 10


@pytest.fixture(scope="module")
def rehearsal(bluegreen_config: StackConfig, request: pytest.FixtureRequest) -> MigrationRehearsal:
    """The deploy's rehearsal, when the settings give a database and migrations to rehearse."""
    if not bluegreen_config.has_database:
        not_applicable("no database in the settings (bluegreen.database.kind = 'none')")
    if not bluegreen_config.migrations.command:
        not_applicable("no migrate_command in the settings: no migrations to rehearse")
    found: MigrationRehearsal = request.getfixturevalue("bluegreen_rehearsal")
    return found


def test_models_match_migrations(rehearsal: MigrationRehearsal) -> None:
    """No model change without its migration, and no conflicting migrations."""
    if not rehearsal.config.migrations.check_command:
        not_applicable("no migration_check_command in the settings")
    try:
        rehearsal.check_models()
    except BluegreenError as exc:
        pytest.fail(
            "the release has model changes without a migration, or conflicting migrations; "
            f"make (or merge) the migrations and build again:\n{exc}"
        )


def test_migrations_apply_to_a_copy(rehearsal: MigrationRehearsal) -> None:
    """Every pending migration of the release applies cleanly to a copy of today's data."""
    try:
        applied = rehearsal.migrate()
    except BluegreenError as exc:
        pytest.fail(f"the release's migrations fail on a copy of the database:\n{exc}")
    print(f"migrations rehearsed on {rehearsal.scratch}: {', '.join(applied) or 'none'}")
    if rehearsal.config.migrations.pending_command:
        plan_after = rehearsal.pending()
        assert plan_after == [], (
            f"still unapplied after migrating the copy: {', '.join(plan_after)}"
        )


@pytest.fixture(scope="module")
def live_on_copy(rehearsal: MigrationRehearsal) -> Iterator[LiveColourOnCopy]:
    """The live colour's image serving from the migrated copy, for this module's tests."""
    if rehearsal.live_colour is None:
        not_applicable("first deploy: no live colour reads this database yet")
    if not rehearsal.config.migrations.rehearsal_port:
        not_applicable("rehearsal_port is 0 in the settings: the live colour's port is unknown")
    try:
        rehearsal.migrate()
        with rehearsal.live_colour_on_copy() as live:
            yield live
    except BluegreenError as exc:
        pytest.fail(f"cannot rehearse the live colour on the migrated copy: {exc}")


def test_live_colour_works_on_the_migrated_copy(
    live_on_copy: LiveColourOnCopy, rehearsal: MigrationRehearsal
) -> None:
    """The colour still serving users answers its paths on the new schema."""
    config = rehearsal.config
    problems = []
    with requests.Session() as session:
        session.trust_env = False
        for path in config.paths_on_copy:
            expected = config.gates.expected_status.get(path, 200)
            response = session.get(
                live_on_copy.url + path,
                headers=live_on_copy.headers,
                timeout=TIMEOUT_S,
                allow_redirects=False,
            )
            if response.status_code != expected:
                problems.append(f"{path}: HTTP {response.status_code}, expected {expected}")
            elif response.headers.get("X-Bluegreen-Colour") not in (None, live_on_copy.colour):
                problems.append(f"{path}: answered by {response.headers['X-Bluegreen-Colour']}")
    applied = ", ".join(rehearsal.applied or []) or "none"
    assert not problems, (
        f"the live colour ({live_on_copy.colour}) breaks on the schema the new release migrates "
        f"to (migrations: {applied}): {'; '.join(problems)}. A migration removes or renames "
        "something the live colour still reads: keep it (expand) in this release and remove it "
        "(contract) in a later one. The real database was not migrated.\n"
        f"Errors in the live colour's log: {'; '.join(live_on_copy.errors()) or 'none'}"
    )
