"""The README's main command, as a newcomer runs it, on an engine with none of the stack's images.

``bash scripts/deploy.sh`` itself runs in a copy of this checkout (its own ``.env``, state and
reports; the same ``.venv``), as Compose project ``bgfresh`` on loopback ports 38xxx. The
reference stack names its images after the project, so no earlier run has cached a
``bgfresh-*`` image: the first deploy must build what the colours share before it needs it
(a first deploy once failed in its backup stage: "Service 'db' needs to be built, but
--no-build was passed"). A port another program holds is refused first, with nothing built.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import tomli_w

from pytest_bluegreen.adapters.engines.compose import ComposeStack
from pytest_bluegreen.core.config import load_config
from pytest_bluegreen.core.record import RecordStore
from tests.harness import merged, reference_settings
from tests.images import ThrowawayImages
from tests.integration.conftest import REPO, progress

PROJECT = "bgfresh"
PORTS = {
    "PUBLIC_BIND": "127.0.0.1",
    "PUBLIC_HTTP_PORT": "38080",
    "PUBLIC_HTTPS_PORT": "38443",
    "PREVIEW_BLUE_PORT": "38441",
    "PREVIEW_GREEN_PORT": "38442",
    "STATS_PORT": "38404",
}
SETTINGS = merged(
    reference_settings(),  # the reference stack's own: Django, PostgreSQL, the aptos suites
    {
        "project_name": PROJECT,
        "compose_files": ["docker-compose.blue-green.yml"],
        # 2 shared cores: p99 of a one-second window is noise (bench/ measures it); 0 failures
        # holds.
        "load": {"p99_budget_ms": 2000},
    },
)
SHARED_IMAGES = (f"{PROJECT}-db:15", f"{PROJECT}-loadbalancer:2.6")


def copy_checkout(dest: Path) -> None:
    """The checkout's files as a fresh clone has them (tracked or not ignored), and its venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    # The project is installed there already (setup.sh sees its stamp and installs nothing).
    (dest / ".venv").symlink_to(REPO / ".venv")


def project_images() -> list[str]:
    listed = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"{PROJECT}-*"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return sorted(listed.split())


def project_containers() -> list[str]:
    label = f"label=com.docker.compose.project={PROJECT}"
    listed = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", label],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return listed.split()


class Newcomer:
    """A copy of the checkout, and the README's main command run in it."""

    def __init__(self, home: Path) -> None:
        self.repo = home / "repo"
        self.repo.mkdir()
        copy_checkout(self.repo)
        self.settings = self.repo / "bluegreen-fresh.toml"
        self.settings.write_text(tomli_w.dumps(SETTINGS))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
        self.env.update(PORTS)

    def deploy_sh(self, release: str) -> subprocess.CompletedProcess[str]:
        argv = ["bash", "scripts/deploy.sh", release, f"--bg-config={self.settings.name}"]
        return subprocess.run(
            argv,
            cwd=self.repo,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=1500,
        )

    def stack(self) -> ComposeStack:
        return ComposeStack(
            load_config(self.repo, self.settings, environ=self.env), progress=progress
        )


@pytest.fixture(scope="module")
def newcomer(throwaway_images: ThrowawayImages) -> Iterator[Newcomer]:
    throwaway_images.add(PROJECT)
    home = Path(tempfile.mkdtemp(prefix="bgnew-"))  # short: HAProxy's admin socket path
    newcomer = Newcomer(home)
    newcomer.stack().down(volumes=True)
    subprocess.run(["docker", "rmi", *project_images()], capture_output=True, check=False)
    yield newcomer
    try:
        newcomer.stack().down(volumes=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_port_in_use_is_one_clear_line_and_nothing_is_built(newcomer: Newcomer) -> None:
    assert project_images() == []
    assert project_containers() == []
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", int(PORTS["PUBLIC_HTTPS_PORT"])))
        other_program.listen()
        run = newcomer.deploy_sh("fresh-r2")
    assert run.returncode != 0, run.stdout[-3000:]
    refusal = re.compile(
        r"!! stage prerequisites failed: \S*::test_prerequisites: (\w+\.)*PortInUse: "
        r"port 38443 on 127\.0\.0\.1, which loadbalancer publishes, is already in use by "
        r"another program: stop it, or set PUBLIC_HTTPS_PORT \(in \S+/\.env or the "
        r"environment\) to a free port"
    )
    said = [line for line in run.stdout.splitlines() if refusal.fullmatch(line)]
    assert len(said) == 1, run.stdout[-3000:]
    assert project_images() == [], "a refused deploy built images"
    assert project_containers() == [], "a refused deploy started containers"


def test_the_main_command_deploys_from_no_images(newcomer: Newcomer) -> None:
    assert project_images() == []
    assert project_containers() == []
    run = newcomer.deploy_sh("fresh-r2")
    assert run.returncode == 0, run.stdout[-6000:]
    out = run.stdout
    assert "deploy.sh: no live stack here yet: first deploy (release initial)" in out
    assert "built db, loadbalancer" in out  # by the first deploy, before its backup
    assert "live colour: green (HAProxy" in out  # the closing --bg-status

    records = reversed(RecordStore(newcomer.repo / ".bluegreen").history())
    deployed = [(r.release, r.from_colour, r.to_colour) for r in records if r.result == "deployed"]
    assert deployed == [("initial", None, "blue"), ("fresh-r2", "blue", "green")]
    last = json.loads((newcomer.repo / ".bluegreen" / "last-deploy.json").read_text())
    assert (last["release"], last["result"]) == ("fresh-r2", "deployed")
    assert (newcomer.repo / "reports" / "deploy-fresh-r2.html").is_file()

    with requests.Session() as https:
        https.trust_env = False
        https.verify = str(newcomer.repo / ".bluegreen" / "tls" / "ca.pem")
        answer = https.get(f"https://localhost:{PORTS['PUBLIC_HTTPS_PORT']}/api/v1/health")
    assert answer.status_code == 200
    assert answer.headers["X-Bluegreen-Colour"] == "green"
    assert answer.headers["X-Bluegreen-Release"] == "fresh-r2"

    images = project_images()
    for image in (*SHARED_IMAGES, f"{PROJECT}-backend:fresh-r2", f"{PROJECT}-frontend:initial"):
        assert image in images
