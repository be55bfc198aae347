"""The reference stack on a real Docker engine: health, HTTPS routes, images, security."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import requests

from pytest_bluegreen.core.colours import COLOURS
from pytest_bluegreen.core.config import StackConfig
from tests.integration.conftest import REPO, RunningStack

# From no containers to every service healthy; measured at about 60 s on 2 cores with cached images.
HEALTHY_BOUND_S = 240
# Named after the Compose project (bgtest), so that this test's images are its own.
IMAGES = (
    "bgtest-db:15",
    "bgtest-backend:initial",
    "bgtest-frontend:initial",
    "bgtest-loadbalancer:2.6",
)


def test_every_service_is_healthy_within_the_bound(running_stack: RunningStack) -> None:
    stack = running_stack.stack
    config = stack.config
    services = [config.database.service, config.services.loadbalancer]
    services += [s for c in COLOURS for s in config.services.services_of(c)]
    for service in services:
        (container_id,) = stack.container_ids(service)
        state = stack.engine.state(container_id)
        assert (state.status, state.health) == ("running", "healthy"), service
    assert running_stack.up_seconds < HEALTHY_BOUND_S


def test_a_second_build_reuses_the_cached_images(running_stack: RunningStack) -> None:
    stack = running_stack.stack
    before = {image: stack.engine.image_id(image) for image in IMAGES}
    assert all(before.values()), before
    config = stack.config
    stack.compose.build(
        [
            config.database.service,
            config.services.loadbalancer,
            *config.services.services_of("blue"),
        ]
    )
    after = {image: stack.engine.image_id(image) for image in IMAGES}
    assert after == before


@pytest.mark.parametrize(
    ("path", "expect"),
    [
        ("/", "apartment-count"),
        ("/aptos", "<table"),
        ("/builders", "<table"),
        ("/admin/", "Django administration"),
        ("/health", '"service": "frontend"'),
    ],
)
def test_pages_answer_over_https(
    blue_live: RunningStack, https: requests.Session, path: str, expect: str
) -> None:
    response = https.get(blue_live.config.public_url + path, timeout=10)
    assert response.status_code == 200
    assert expect in response.text
    assert response.headers["X-Bluegreen-Colour"] == "blue"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


@pytest.mark.parametrize("path", ["/api/v1/aptos/", "/api/v1/builders/"])
def test_api_lists_answer_json(blue_live: RunningStack, https: requests.Session, path: str) -> None:
    response = https.get(blue_live.config.public_url + path, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] > 0
    assert len(body["results"]) == min(body["count"], body["page_size"])
    assert response.headers["X-Bluegreen-Backend"] == "api_blue"


def test_api_health_checks_the_database(blue_live: RunningStack, https: requests.Session) -> None:
    response = https.get(blue_live.config.public_url + "/api/v1/health", timeout=10)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "colour": "blue",
        "release": "initial",
        "database": "ok",
    }


def test_http_redirects_to_https(blue_live: RunningStack) -> None:
    config = blue_live.config
    response = requests.get(config.public_http_url + "/aptos?page=2", allow_redirects=False)
    assert response.status_code == 301
    assert response.headers["Location"] == f"{config.public_url}/aptos?page=2"


def test_preview_route_reaches_the_idle_colour_only(
    blue_live: RunningStack, https: requests.Session
) -> None:
    config = blue_live.config
    for colour in COLOURS:
        for path in ("/api/v1/health", "/health"):
            response = https.get(config.preview_url(colour) + path, timeout=10)
            assert response.status_code == 200
            assert response.headers["X-Bluegreen-Colour"] == colour
    live = https.get(config.public_url + "/api/v1/health", timeout=10)
    assert live.headers["X-Bluegreen-Colour"] == "blue"


def test_stats_page_needs_the_password(blue_live: RunningStack) -> None:
    config = blue_live.config
    password = config.environment["STATS_PASSWORD"]
    assert requests.get(config.stats_url, timeout=10).status_code == 401
    assert requests.get(config.stats_url, auth=("admin", "wrong"), timeout=10).status_code == 401
    response = requests.get(config.stats_url, auth=("admin", password), timeout=10)
    assert response.status_code == 200
    assert "Statistics Report" in response.text


def test_stats_and_runtime_api_are_not_public(
    blue_live: RunningStack, https: requests.Session
) -> None:
    config = blue_live.config
    for url in (config.public_url, config.preview_url("green")):
        response = https.get(url + "/stats", timeout=10)
        assert response.status_code == 404
        assert "Statistics Report" not in response.text
    mode = config.admin_socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def run_postdeploy(config: StackConfig, *options: str) -> subprocess.CompletedProcess[str]:
    """``pytest suites/postdeploy`` as a user runs it against a live URL, with no Docker access."""
    argv = [sys.executable, "-m", "pytest", "suites/postdeploy", "-p", "no:cacheprovider", "-q"]
    argv += [f"--bg-target={config.public_url}", f"--bg-ca-file={config.ca_file}", *options]
    return subprocess.run(
        argv,
        cwd=REPO,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_postdeploy_suite_runs_standalone_with_xdist(blue_live: RunningStack) -> None:
    config = blue_live.config
    result = run_postdeploy(
        config, "--bg-expect-colour=blue", "--bg-expect-release=initial", "-n", "2"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "12 passed" in result.stdout


def test_postdeploy_suite_catches_the_wrong_colour(blue_live: RunningStack) -> None:
    result = run_postdeploy(blue_live.config, "--bg-expect-colour=green")
    assert result.returncode == 1
    assert "answered by colour 'blue', expected green" in result.stdout
