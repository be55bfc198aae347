"""Switching colours through HAProxy's runtime API, on the real stack."""

from __future__ import annotations

import subprocess
import threading
import time

import requests

from pytest_bluegreen.adapters.routers.haproxy import read_map_file
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

    stack.compose.restart([config.services.loadbalancer])
    stack.wait_healthy([config.services.loadbalancer], timeout_s=60)
    stack.router.wait_ready("green", timeout_s=30)

    assert stack.router.active_colour() == "green"
    response = https.get(config.public_url + "/api/v1/health", timeout=10)
    assert response.headers["X-Bluegreen-Colour"] == "green"


def test_a_drain_closes_the_sessions_still_open_at_its_deadline(
    blue_live: RunningStack, https: requests.Session
) -> None:
    """A request the backend cannot finish (its table locked) is a long-lived session on blue."""
    stack = blue_live.stack
    config = stack.config
    (db,) = stack.container_ids(config.database.service)
    env = config.environment
    lock_sql = "BEGIN; LOCK TABLE aptos_apartment IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(20);"
    lock = subprocess.Popen(
        ["docker", "exec", db, "psql", "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"],
         "-c", lock_sql],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    outcome: list[object] = []

    def held_request() -> None:
        try:
            outcome.append(https.get(config.public_url + "/api/v1/aptos/", timeout=30).status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    try:
        time.sleep(1)  # the lock first
        client = threading.Thread(target=held_request)
        client.start()
        deadline = time.monotonic() + 10
        while not any(s.current_sessions for s in stack.router.servers("blue")):
            assert time.monotonic() < deadline, "the held request never reached blue"
            time.sleep(0.1)

        result = stack.router.drain("blue", timeout_s=1.0)

        assert result.closed_sessions == 1
        assert 1.0 <= result.waited_s < 5
        assert not any(s.current_sessions for s in stack.router.servers("blue"))
        client.join(timeout=15)
        assert outcome, "the held request did not end when its session was closed"
        assert outcome[0] != 200, outcome  # cut, not answered: the table is still locked
        assert lock.poll() is None, "the lock ended first: the session was not held by it"
    finally:
        lock.kill()  # the client only: end the locking session inside the database too
        lock.wait(timeout=10)
        subprocess.run(
            ["docker", "exec", db, "psql", "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"],
             "-c", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
             "WHERE query LIKE '%pg_sleep(20)%' AND pid <> pg_backend_pid()"],
            capture_output=True, check=False, timeout=30,
        )  # fmt: skip
