"""Migration rehearsal: the new release's migrations on a copy of the database, first.

A gate of the deploy's ``migration`` stage, before the real database is migrated: the backup
just taken is restored into a scratch database, the new release's migrations run there, and the
live colour's own image is started on the migrated copy, where it must still answer. A release
that drops or renames something the live colour reads fails here, and the real database is never
touched (expand now, contract in a later release).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from pytest_bluegreen import LiveColourOnCopy, MigrationRehearsal, not_applicable
from pytest_bluegreen.core.errors import BluegreenError

pytestmark = pytest.mark.bluegreen_stage("migration")
TIMEOUT_S = 10


def test_models_match_migrations(bluegreen_rehearsal: MigrationRehearsal) -> None:
    """No model change without its migration, and no conflicting migrations."""
    try:
        bluegreen_rehearsal.check_models()
    except BluegreenError as exc:
        pytest.fail(
            "the release has model changes without a migration, or conflicting migrations; "
            f"make (or merge) the migrations and build again:\n{exc}"
        )


def test_migrations_apply_to_a_copy(bluegreen_rehearsal: MigrationRehearsal) -> None:
    """Every pending migration of the release applies cleanly to a copy of today's data."""
    try:
        applied = bluegreen_rehearsal.migrate()
    except BluegreenError as exc:
        pytest.fail(f"the release's migrations fail on a copy of the database:\n{exc}")
    print(f"migrations rehearsed on {bluegreen_rehearsal.scratch}: {', '.join(applied) or 'none'}")
    plan_after = bluegreen_rehearsal.pending()
    assert plan_after == [], f"still unapplied after migrating the copy: {', '.join(plan_after)}"


@pytest.fixture(scope="module")
def live_on_copy(bluegreen_rehearsal: MigrationRehearsal) -> Iterator[LiveColourOnCopy | None]:
    if bluegreen_rehearsal.live_colour is None:
        yield None
        return
    try:
        bluegreen_rehearsal.migrate()
        with bluegreen_rehearsal.live_colour_on_copy() as live:
            yield live
    except BluegreenError as exc:
        pytest.fail(f"cannot rehearse the live colour on the migrated copy: {exc}")


def test_live_colour_works_on_the_migrated_copy(
    live_on_copy: LiveColourOnCopy | None,
    bluegreen_rehearsal: MigrationRehearsal,
) -> None:
    """The colour still serving users answers its paths on the new schema."""
    if live_on_copy is None:
        not_applicable("first deploy: no live colour reads this database yet")
    problems = []
    with requests.Session() as session:
        session.trust_env = False
        for path in bluegreen_rehearsal.stack.config.paths_on_copy:
            response = session.get(
                live_on_copy.url + path,
                headers=live_on_copy.headers,
                timeout=TIMEOUT_S,
                allow_redirects=False,
            )
            if response.status_code != 200:
                problems.append(f"{path}: HTTP {response.status_code}")
            elif response.headers.get("X-Bluegreen-Colour") not in (None, live_on_copy.colour):
                problems.append(f"{path}: answered by {response.headers['X-Bluegreen-Colour']}")
    applied = ", ".join(bluegreen_rehearsal.applied or []) or "none"
    assert not problems, (
        f"the live colour ({live_on_copy.colour}) breaks on the schema the new release migrates "
        f"to (migrations: {applied}): {'; '.join(problems)}. A migration removes or renames "
        "something the live colour still reads: keep it (expand) in this release and remove it "
        "(contract) in a later one. The real database was not migrated.\n"
        f"Errors in the live colour's log: {'; '.join(live_on_copy.errors()) or 'none'}"
    )
