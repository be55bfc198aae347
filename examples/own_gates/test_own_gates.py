"""Your own gates, beside the shipped suites: an example of every fixture the plugin gives.

Run them in a deploy by naming them after the options (or add the folder to ``gate_suites``):

    pytest --bg-deploy --bg-release r42 examples/own_gates

Tests without a marker run in the ``gates`` stage, against the colour being deployed, before the
switch; ``@pytest.mark.bluegreen_stage(...)`` puts a test in another stage. A failure before the
switch aborts the deploy (users never saw the new colour); after it, it rolls back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from pytest_bluegreen import ScratchDatabase, Target, https_session


@pytest.mark.bluegreen_stage("migration")
def test_no_builder_lost_its_name(bluegreen_scratch_db: ScratchDatabase) -> None:
    """On the copy migrated by the new release (before the real database is touched)."""
    rows = bluegreen_scratch_db.query("SELECT count(*) FROM aptos_builder WHERE name = ''")
    assert rows == [("0",)], f"{rows[0][0]} builders without a name after the migrations"


def test_the_new_colour_names_itself(
    bluegreen_idle_url: str,
    bluegreen_colour: str,
    bluegreen_release: str,
    bluegreen_target: Target,
) -> None:
    """The colour being deployed, through its own preview route, before any user sees it."""
    with https_session(bluegreen_target.ca_file) as http:
        body = http.get(bluegreen_idle_url + "/api/v1/health", timeout=10).json()
    assert (body["colour"], body["release"]) == (bluegreen_colour, bluegreen_release)


def test_users_still_get_the_live_colour(
    bluegreen_live_url: str, bluegreen_live_colour: str | None, bluegreen_target: Target
) -> None:
    """Before the switch the public URL serves the live colour, not the one being deployed."""
    with https_session(bluegreen_target.ca_file) as http:
        response: requests.Response = http.get(bluegreen_live_url + "/api/v1/health", timeout=10)
    assert response.status_code == 200
    if bluegreen_live_colour is not None:  # None on the very first deploy
        assert response.headers["X-Bluegreen-Colour"] == bluegreen_live_colour


def test_gunicorn_serves_with_two_workers(bluegreen_host: Callable[[str], Any]) -> None:
    """Inside the new colour's backend container, with testinfra."""
    backend = bluegreen_host("backend")
    commands = backend.check_output(
        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done"
    ).splitlines()
    workers = [c for c in commands if c.startswith("/usr/bin/python3 /usr/bin/gunicorn")]
    assert len(workers) == 3, f"expected a gunicorn master and 2 workers, found {workers}"
