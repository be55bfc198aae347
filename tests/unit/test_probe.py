"""The HTTP probe of a colour's critical paths: statuses, redirects, the colour and release."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_bluegreen.checks.probe import check_colour_serves
from tests.unit.colour_server import ColourServer, serving


@pytest.fixture
def colour() -> Iterator[ColourServer]:
    with serving() as server:
        yield server


def test_follows_redirects_of_a_path_expected_to_answer_200(colour: ColourServer) -> None:
    assert check_colour_serves(colour.url, ["/", "/admin/"], "green", None) == []


def test_judges_a_path_with_an_expected_status_on_its_own_answer(
    colour: ColourServer,
) -> None:
    paths = ["/", "/admin/"]
    statuses = {"/admin/": 302}
    assert check_colour_serves(colour.url, paths, "green", None, expected_status=statuses) == []
    assert check_colour_serves(colour.url, paths, "green", None, expected_status={"/": 302}) == [
        "/: HTTP 200, expected 302"
    ]


def test_checks_the_colour_and_release_headers(colour: ColourServer) -> None:
    assert check_colour_serves(colour.url, ["/"], "blue", None) == [
        "/: answered by colour 'green', expected blue"
    ]
    assert check_colour_serves(colour.url, ["/"], None, None, release="r3") == [
        "/: answered by release 'r2', expected r3"
    ]
    assert check_colour_serves(colour.url, ["/"], None, None) == []


def test_a_missing_ca_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """A rollback's proof must say why it failed, not end in a traceback."""
    problems = check_colour_serves(
        "https://127.0.0.1:9", ["/health"], "blue", tmp_path / "gone" / "ca.pem"
    )
    assert len(problems) == 1
    assert problems[0].startswith("/health: OSError:")
    assert "gone/ca.pem" in problems[0]
