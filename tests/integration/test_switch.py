"""Switching colours through HAProxy's runtime API, on the real stack."""

from __future__ import annotations

import requests

from pytest_bluegreen.adapters.haproxy import read_map_file
from tests.integration.conftest import RunningStack

REQUESTS_PER_CLIENT = 40


def colours_seen(url: str, ca_file: str, keep_alive: requests.Session) -> list[str]:
    """Colours answering ``url``: half through a kept-alive connection, half on new ones."""
    seen = []
    for _ in range(REQUESTS_PER_CLIENT):
        seen.append(keep_alive.get(url, timeout=10).headers["X-Bluegreen-Colour"])
        fresh = requests.get(url, verify=ca_file, headers={"Connection": "close"}, timeout=10)
        seen.append(fresh.headers["X-Bluegreen-Colour"])
    return seen


def test_switch_moves_every_new_request(blue_live: RunningStack, https: requests.Session) -> None:
    config = blue_live.config
    router = blue_live.stack.router
    ca = str(config.ca_file)
    api, web = config.public_url + "/api/v1/health", config.public_url + "/health"
    # The keep-alive connection is opened before the switch and must follow it.
    assert set(colours_seen(api, ca, https)) == {"blue"}

    result = router.switch("green")

    assert (result.from_colour, result.to_colour) == ("blue", "green")
    assert result.switch_ms < 100
    for url in (api, web):
        seen = colours_seen(url, ca, https)
        assert seen.count("green") == len(seen) == 2 * REQUESTS_PER_CLIENT
    assert read_map_file(config.map_file) == "green"

    router.switch("blue")
    assert set(colours_seen(api, ca, https)) == {"blue"}


def test_restart_keeps_the_switched_colour(
    blue_live: RunningStack, https: requests.Session
) -> None:
    stack = blue_live.stack
    config = stack.config
    stack.router.switch("green")

    stack.compose.restart([config.loadbalancer_service])
    stack.wait_healthy([config.loadbalancer_service], timeout_s=60)
    stack.router.wait_ready("green", timeout_s=30)

    assert stack.router.active_colour() == "green"
    response = https.get(config.public_url + "/api/v1/health", timeout=10)
    assert response.headers["X-Bluegreen-Colour"] == "green"
