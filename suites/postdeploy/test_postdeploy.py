"""Post-deploy validation of a live deployment through its public URL.

The verify stage of a deploy, and on its own: ``pytest suites/postdeploy --bg-target URL``
(``-n auto`` works too). Every check is independent, so xdist can spread them.
"""

from __future__ import annotations

import time

import pytest
import requests

from pytest_bluegreen.config import DESIGN_CRITICAL_PATHS
from pytest_bluegreen.probe import Target
from suites.checks import assert_served_by

API_BUDGET_S = 0.5  # the design document's bound for the API


@pytest.mark.parametrize("path", DESIGN_CRITICAL_PATHS)
def test_endpoint_serves(http: requests.Session, bluegreen_target: Target, path: str) -> None:
    response = http.get(bluegreen_target.url + path, timeout=10)
    assert response.status_code == 200, f"{path}: HTTP {response.status_code}"
    assert_served_by(response, bluegreen_target)


@pytest.mark.parametrize("path", ["/api/v1/aptos/", "/api/v1/builders/", "/api/v1/health"])
def test_api_answers_within_budget(
    http: requests.Session, bluegreen_target: Target, path: str
) -> None:
    http.get(bluegreen_target.url + path, timeout=10)  # warm the connection
    start = time.perf_counter()
    response = http.get(bluegreen_target.url + path, timeout=10)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200
    assert elapsed < API_BUDGET_S, (
        f"{path} took {elapsed * 1000:.0f} ms (budget {API_BUDGET_S * 1000:.0f} ms)"
    )


def test_https_is_enforced(bluegreen_target: Target) -> None:
    """HSTS on the HTTPS answers (the HTTP redirect is checked by the stack's own tests)."""
    with bluegreen_target.session() as session:
        response = session.get(bluegreen_target.url + "/", timeout=10)
    assert response.url.startswith("https://")
    assert "max-age=" in response.headers.get("Strict-Transport-Security", "")
