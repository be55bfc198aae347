"""Smoke: every critical endpoint of the reference app answers with the right content.

A gate of the deploy: it runs against the idle colour's preview route and checks that the colour
and release under test answered.
"""

from __future__ import annotations

import pytest
import requests

from pytest_bluegreen import Target
from suites.checks import assert_served_by

TIMEOUT_S = 10


@pytest.mark.parametrize(
    ("path", "marker"),
    [
        ("/", 'id="apartment-count"'),
        ("/aptos", "<table"),
        ("/builders", "<table"),
        ("/admin/", "Django administration"),
    ],
)
def test_page(http: requests.Session, bluegreen_target: Target, path: str, marker: str) -> None:
    response = http.get(bluegreen_target.url + path, timeout=TIMEOUT_S)
    assert response.status_code == 200, f"{path}: HTTP {response.status_code}"
    assert marker in response.text, f"{path}: page lacks {marker!r}"
    assert_served_by(response, bluegreen_target)


@pytest.mark.parametrize("path", ["/api/v1/aptos/", "/api/v1/builders/"])
def test_api_list(http: requests.Session, bluegreen_target: Target, path: str) -> None:
    response = http.get(bluegreen_target.url + path, timeout=TIMEOUT_S)
    assert response.status_code == 200, (
        f"{path}: HTTP {response.status_code}: {response.text[:200]}"
    )
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert {"count", "page", "page_size", "next", "previous", "results"} <= body.keys()
    assert isinstance(body["results"], list)
    assert len(body["results"]) == min(body["count"], body["page_size"])
    assert_served_by(response, bluegreen_target)
    if body["results"]:
        item_id = body["results"][0]["id"]
        detail = http.get(f"{bluegreen_target.url}{path}{item_id}/", timeout=TIMEOUT_S)
        assert detail.status_code == 200
        assert detail.json()["id"] == item_id


def test_api_health(http: requests.Session, bluegreen_target: Target) -> None:
    response = http.get(bluegreen_target.url + "/api/v1/health", timeout=TIMEOUT_S)
    assert response.status_code == 200, response.text[:200]
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    if bluegreen_target.colour:
        assert body["colour"] == bluegreen_target.colour
    if bluegreen_target.release:
        assert body["release"] == bluegreen_target.release
    assert_served_by(response, bluegreen_target)


def test_frontend_health(http: requests.Session, bluegreen_target: Target) -> None:
    response = http.get(bluegreen_target.url + "/health", timeout=TIMEOUT_S)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert_served_by(response, bluegreen_target)
