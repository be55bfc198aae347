"""``bluegreen init`` on a real one-colour project, then Compose, HAProxy and ``doctor`` on it.

A throwaway project ``bginit``: one service, ``web`` (``python3 -m http.server`` built FROM
${BASE_IMAGE}), published on 127.0.0.1:48000, the way a team's file would have it. Init must
leave that file as it is; Compose must accept the generated override; ``up`` must start both
colours and the loadbalancer but never the original ``web``; HAProxy must serve through the
old port, name the colour and release, and accept its configuration in each TLS mode.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from pytest_bluegreen.adapters.routers.tls import ensure_certificate
from pytest_bluegreen.scaffold.doctor import run_doctor
from pytest_bluegreen.scaffold.init import run_init
from pytest_bluegreen.scaffold.source import OVERRIDE, env_values

pytestmark = pytest.mark.integration

PROJECT = "bginit"
PUBLIC_PORT = 48000
# The loadbalancer's other ports, in the project's .env as a team would set them.
PORTS = {
    "PUBLIC_HTTP_PORT": "48080",
    "PREVIEW_BLUE_PORT": "48441",
    "PREVIEW_GREEN_PORT": "48442",
    "STATS_PORT": "48404",
}
BASE_IMAGE = os.environ.get("BLUEGREEN_TEST_BASE_IMAGE", "bluegreen-base:bookworm")

COMPOSE = """\
services:
  web:
    build:
      context: ./web
      args:
        BASE_IMAGE: ${BASE_IMAGE:-debian:bookworm-slim}
    ports:
      - "127.0.0.1:48000:8000"
    environment:
      GREETING: ${GREETING:-hello}
"""
# The same first layers as the reference frontend's, so the engine's cache serves them.
DOCKERFILE = """\
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# Debian's packages only; this layer stays cached while the code changes.
RUN apt-get update \\
    && apt-get install -y --no-install-recommends python3 gunicorn \\
    && rm -rf /var/lib/apt/lists/*

WORKDIR /srv
COPY index.html health /srv/
USER nobody
EXPOSE 8000
CMD ["python3", "-m", "http.server", "8000"]
"""


def compose(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    argv = ["docker-compose", "-p", PROJECT, "-f", "docker-compose.yml", "-f", OVERRIDE, *args]
    return subprocess.run(
        argv, cwd=root, capture_output=True, text=True, timeout=timeout, check=False
    )


def remove_leftovers(root: Path) -> None:
    compose(root, "down", "-v", "--rmi", "all", "--remove-orphans", timeout=300)
    images = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    mine = [ref for ref in images if ref.startswith(f"{PROJECT}-")]
    if mine:
        subprocess.run(["docker", "rmi", *mine], capture_output=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def team_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The team's project, before and after ``bluegreen init``; its stack removed at the end."""
    if shutil.which("docker-compose") is None:
        pytest.skip("needs docker-compose")
    root = tmp_path_factory.mktemp("scaffold") / PROJECT
    (root / "web").mkdir(parents=True)
    (root / "web" / "Dockerfile").write_text(DOCKERFILE)
    (root / "web" / "index.html").write_text("hello\n")
    (root / "web" / "health").write_text("ok\n")
    (root / "docker-compose.yml").write_text(COMPOSE)
    (root / ".env").write_text(
        f"BASE_IMAGE={BASE_IMAGE}\n" + "".join(f"{k}={v}\n" for k, v in PORTS.items())
    )
    try:
        yield root
    finally:
        remove_leftovers(root)


@pytest.fixture(scope="module")
def initialised(team_project: Path) -> tuple[Path, list[str]]:
    lines: list[str] = []
    run_init(team_project, say=lines.append)
    return team_project, lines


def test_init_keeps_the_team_file_and_says_what_it_did(initialised: tuple[Path, list[str]]) -> None:
    root, lines = initialised
    assert (root / "docker-compose.yml").read_text() == COMPOSE
    assert lines[0] == "bluegreen init: project 'bginit', from docker-compose.yml"
    assert (
        lines[1]
        == "  web  per colour, routed: has build: and publishes 48000 -> container port 8000"
    )
    assert f"wrote: {OVERRIDE}" in lines
    assert "next: pytest --bg-deploy --bg-release <id>" in lines
    env = env_values(root / ".env")
    assert env["PUBLIC_HTTPS_PORT"] == str(PUBLIC_PORT)
    assert env["STATS_PASSWORD"] not in "\n".join(lines)
    again: list[str] = []
    run_init(root, say=again.append)
    assert not any(line.startswith(("wrote", "replaced", "kept", "added")) for line in again)


def test_compose_accepts_the_override(initialised: tuple[Path, list[str]]) -> None:
    root, _ = initialised
    result = compose(root, "config")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"web", "web-blue", "web-green", "loadbalancer"} <= set(services)
    assert services["web"]["profiles"] == ["bluegreen-source"]
    assert services["web-green"]["image"] == f"{PROJECT}-web:initial"
    assert services["web-green"]["environment"]["BG_COLOUR"] == "green"
    assert "ports" not in services["web-blue"]


def test_up_starts_both_colours_behind_haproxy_and_not_the_original(
    initialised: tuple[Path, list[str]],
) -> None:
    root, _ = initialised
    state = root / ".bluegreen"
    ensure_certificate(state / "tls" / "site.pem")
    (state / "lb").mkdir(parents=True)
    (state / "lb" / "active.map").write_text("active blue\n")
    (state / "lb" / "releases.map").write_text("blue r1\ngreen r2\n")
    up = compose(root, "up", "-d", "--build", timeout=1200)
    assert up.returncode == 0, up.stderr[-3000:]
    running = compose(root, "ps", "--services", "--filter", "status=running").stdout.split()
    assert sorted(running) == ["loadbalancer", "web-blue", "web-green"]

    ca = str(state / "tls" / "ca.pem")
    deadline = time.monotonic() + 60
    while True:
        try:
            answer = requests.get(f"https://127.0.0.1:{PUBLIC_PORT}/", verify=ca, timeout=5)
            if answer.status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "HAProxy did not serve web through the old port"
        time.sleep(0.5)
    assert answer.text == "hello\n"
    assert answer.headers["X-Bluegreen-Colour"] == "blue"
    assert answer.headers["X-Bluegreen-Release"] == "r1"
    assert answer.headers["X-Bluegreen-Backend"] == "web_blue"
    preview = requests.get(
        f"https://127.0.0.1:{PORTS['PREVIEW_GREEN_PORT']}/", verify=ca, timeout=5
    )
    assert preview.headers["X-Bluegreen-Colour"] == "green"
    assert preview.headers["X-Bluegreen-Release"] == "r2"
    redirect = requests.get(
        f"http://127.0.0.1:{PORTS['PUBLIC_HTTP_PORT']}/x", allow_redirects=False, timeout=5
    )
    assert redirect.headers["Location"] == f"https://127.0.0.1:{PUBLIC_PORT}/x"

    lines: list[str] = []
    assert run_doctor(root, lines.append) == 0, "\n".join(lines)
    assert f"ok    port {PUBLIC_PORT} (loadbalancer): held by this project's loadbalancer" in lines


@pytest.mark.parametrize("tls", ["self-signed", "files", "off"])
def test_haproxy_accepts_the_generated_configuration(
    initialised: tuple[Path, list[str]], tls: str
) -> None:
    root, _ = initialised
    settings = root / "bluegreen.toml"
    text = settings.read_text()
    current = next(line for line in text.splitlines() if line.startswith("tls = "))
    settings.write_text(text.replace(current, f'tls = "{tls}"'))
    if tls == "files":
        # The team's own certificate, copied where HAProxy reads it (a throwaway one here).
        ensure_certificate(root / "team-certs" / "site.pem")
        pem = (root / "team-certs" / "site.pem").read_bytes()
        (root / ".bluegreen" / "tls" / "site.pem").write_bytes(pem)
    lines: list[str] = []
    run_init(root, force=True, say=lines.append)
    cfg = (root / "bluegreen/haproxy/haproxy.cfg").read_text()
    assert ("bind :443 ssl" in cfg) == (tls != "off")
    checked = compose(
        root, "run", "--rm", "--no-deps", "loadbalancer",
        "haproxy", "-c", "-f", "/usr/local/etc/haproxy/haproxy.cfg",
        timeout=300,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout + checked.stderr
