"""Adopting pytest-bluegreen on a team's own stack, the way a newcomer does it.

The package comes from a wheel built from this checkout, installed into a fresh virtualenv outside
the repository; nothing of the repository is importable there. Each example under ``examples/``
(a team's one-colour Compose file, unchanged) is copied, ``bluegreen init`` adopts it, and the
installed ``pytest --bg-deploy`` then: deploys a first release, deploys a second one with the
switch under load (no failed request), stops a broken release before its switch (traffic stays on
the good one), and rolls back after a switch (traffic on the release before). One example serves
the team's own certificate (``tls = "files"``), the other plain HTTP behind a terminator
(``tls = "off"``).

Real Docker, real HAProxy, real MariaDB and Redis; projects ``bgadopt-*``, host ports 47xxx.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import tomli_w
import tomllib

from pytest_bluegreen.adapters.routers.tls import ensure_certificate
from tests.harness import merged

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("BASE_IMAGE", "debian:bookworm-slim")
DEPLOY_TIMEOUT_S = 900


@dataclass(frozen=True)
class Example:
    """One example stack and what a team adds to the settings ``init`` wrote."""

    name: str
    project: str
    ports: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)
    # The README's broken release: (file, old, new), one replacement.
    broken: tuple[str, str, str] = ("", "", "")
    # A release's own change: (file, old, new).
    change: tuple[str, str, str] = ("", "", "")
    # TLS at HAProxy: the team's own certificate ("files"), or none behind a terminator ("off").
    tls: str = "self-signed"


# Budgets for 2 shared cores with Docker builds beside the load: the p99 of one second moves by
# hundreds of milliseconds with no switch at all; failed requests keep the strict budget of 0.
RELAXED = {
    "load_p99_budget_ms": 1000,
    "latency_p50_budget_ms": 500,
    "latency_p99_budget_ms": 1500,
    "latency_margin_ms": 1000,
    "bake_s": 3,
}

NODE = Example(
    name="node-cache",
    project="bgadopt-node",
    ports={
        "PUBLIC_HTTPS_PORT": "47443",
        "PUBLIC_HTTP_PORT": "47080",
        "PREVIEW_BLUE_PORT": "47441",
        "PREVIEW_GREEN_PORT": "47442",
        "STATS_PORT": "47404",
    },
    settings={**RELAXED, "critical_paths": ["/", "/health", "/api/visits"]},
    broken=("web/server.js", "sendText(res, 200, 'ok')", "sendText(res, 500, 'ok')"),
    tls="files",
    change=("web/server.js", "<h1>Visit counter</h1>", "<h1>Visit counter, release 2</h1>"),
)

SHOP = Example(
    name="shop-mariadb",
    project="bgadopt-shop",
    ports={
        "PUBLIC_HTTPS_PORT": "47543",
        "PUBLIC_HTTP_PORT": "47580",
        "PREVIEW_BLUE_PORT": "47541",
        "PREVIEW_GREEN_PORT": "47542",
        "STATS_PORT": "47504",
    },
    settings={
        **RELAXED,
        "critical_paths": ["/", "/health", "/api/orders"],
        # What init cannot infer: the team's own migration tool.
        "migrate_command": ["python3", "migrate.py", "up"],
        "migration_pending_command": ["python3", "migrate.py", "pending"],
        "rehearsal_port": 8000,
    },
    tls="off",
    broken=(
        "app/api.py",
        'self.send_json(200, {"status": "ok"})',
        'self.send_json(500, {"status": "ok"})',
    ),
    change=(
        "app/migrations/0003_order_notes.sql",
        "",
        "ALTER TABLE orders ADD COLUMN notes VARCHAR(200) NULL;\n",
    ),
)


@dataclass
class Adopted:
    """A copy of one example, adopted by the installed ``bluegreen init``."""

    example: Example
    home: Path
    bin: Path
    outputs: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """A newcomer's shell: the fresh virtualenv first, nothing of this repository."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.bin}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def run(
        self, *argv: str, timeout: float = DEPLOY_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv,
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.outputs.append(result.stdout + result.stderr)
        return result

    def deploy(self, release: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            str(self.bin / "pytest"),
            "--bg-deploy",
            "--bg-release",
            release,
            "-p",
            "no:cacheprovider",
        )

    def edit(self, change: tuple[str, str, str]) -> None:
        """One release's change to the team's code: a replacement, or a new file."""
        path, old, new = change
        target = self.home / path
        if not old:
            target.write_text(new, encoding="utf-8")
            return
        text = target.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{path}: {old!r} is not there once"
        target.write_text(text.replace(old, new), encoding="utf-8")

    def last_record(self) -> dict[str, Any]:
        records = sorted((self.home / ".bluegreen" / "deploys").glob("*.json"))
        assert records, "no deploy record"
        data: dict[str, Any] = json.loads(records[-1].read_text(encoding="utf-8"))
        return data

    @property
    def base_url(self) -> str:
        """Where the team's users reach it: HTTPS on the old port, or plain HTTP behind TLS off."""
        if self.example.tls == "off":
            return f"http://localhost:{self.example.ports['PUBLIC_HTTP_PORT']}"
        return f"https://localhost:{self.example.ports['PUBLIC_HTTPS_PORT']}"

    @property
    def trusted(self) -> str | bool:
        """What the team's clients trust: their own CA, or the stack's self-signed one."""
        if self.example.tls == "files":
            return str(self.home / "certs" / "ca.pem")
        return str(self.home / ".bluegreen" / "tls" / "ca.pem")

    def public(self, path: str) -> requests.Response:
        with requests.Session() as session:
            session.trust_env = False
            return session.get(self.base_url + path, verify=self.trusted, timeout=10)

    def public_post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with requests.Session() as session:
            session.trust_env = False
            response = session.post(
                self.base_url + path, json=body, verify=self.trusted, timeout=10
            )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        files = tomllib.loads((self.home / "bluegreen.toml").read_text())["compose_files"]
        argv = ["docker-compose", "-p", self.example.project]
        for name in files:
            argv += ["-f", name]
        return subprocess.run(
            [*argv, *args], cwd=self.home, capture_output=True, text=True, timeout=300, check=False
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The package from a wheel of this checkout, in a fresh virtualenv outside the repository."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(REPO)],
        check=True,
        timeout=600,
    )
    (wheel,) = work.glob("pytest_bluegreen-*.whl")
    venv = Path(tempfile.mkdtemp(prefix="bgadopt-venv-"))
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    subprocess.run([str(bin_dir / "pip"), "install", "-q", str(wheel)], check=True, timeout=900)
    where = "import pytest_bluegreen; print(pytest_bluegreen.__file__)"
    probe = subprocess.run(
        [str(bin_dir / "python"), "-c", where], capture_output=True, text=True, check=True, cwd="/"
    )
    assert probe.stdout.startswith(str(venv)), probe.stdout  # the wheel's copy, not the checkout
    yield bin_dir
    shutil.rmtree(venv, ignore_errors=True)


@contextlib.contextmanager
def adopt(example: Example, bin_dir: Path) -> Iterator[Adopted]:
    home = Path(tempfile.mkdtemp(prefix=f"bga-{example.name[:4]}-"))
    shutil.copytree(REPO / "examples" / example.name, home, dirs_exist_ok=True)
    lines = []
    for line in (home / ".env.example").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and "PASSWORD" in key:
            value = secrets.token_hex(16)
        elif sep and key == "BASE_IMAGE":
            value = BASE_IMAGE
        lines.append(f"{key}={value}" if sep else line)
    lines += [f"{key}={value}" for key, value in example.ports.items()]
    (home / ".env").write_text("\n".join(lines) + "\n")
    adopted = Adopted(example, home, bin_dir)
    try:
        yield adopted
    finally:
        adopted.compose("down", "-v", "--rmi", "local", "--remove-orphans")
        shutil.rmtree(home, ignore_errors=True)


def team_certificate(home: Path) -> dict[str, str]:
    """A certificate of the team's own CA for localhost, as files a team already has."""
    made = home / "certs" / "made" / "site.pem"
    ensure_certificate(made, ("localhost",))
    pem = made.read_text()
    marker = "-----BEGIN PRIVATE KEY"
    (home / "certs" / "cert.pem").write_text(pem[: pem.index(marker)])
    (home / "certs" / "key.pem").write_text(pem[pem.index(marker) :])
    shutil.copy(made.with_name("ca.pem"), home / "certs" / "ca.pem")
    shutil.rmtree(made.parent)
    return {
        "tls_cert_file": "certs/cert.pem",
        "tls_key_file": "certs/key.pem",
        "tls_ca_file": "certs/ca.pem",
    }


def init_and_configure(adopted: Adopted) -> None:
    """``bluegreen init``, then the settings it could not infer, as a team would edit them."""
    bluegreen = str(adopted.bin / "bluegreen")
    result = adopted.run(bluegreen, "init", "--tls", adopted.example.tls, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (adopted.home / "bluegreen.toml").is_file()
    written = tomllib.loads((adopted.home / "bluegreen.toml").read_text())
    assert written["router"]["tls"] == adopted.example.tls
    edits: dict[str, Any] = {"project_name": adopted.example.project, **adopted.example.settings}
    if adopted.example.tls == "files":
        edits.update(team_certificate(adopted.home))
    settings = merged(written, edits)  # in init's sectioned spelling, whatever the edits use
    (adopted.home / "bluegreen.toml").write_text(tomli_w.dumps(settings))
    again = adopted.run(bluegreen, "init", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr  # safe to run again
    assert tomllib.loads((adopted.home / "bluegreen.toml").read_text()) == settings  # kept
    doctor = adopted.run(bluegreen, "doctor", timeout=300)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


def outcomes(record: dict[str, Any]) -> dict[str, str]:
    """Stage name -> outcome, from a deploy record."""
    return {stage["name"]: stage["outcome"] for stage in record["stages"]}


def deploy_two_releases_a_broken_one_and_roll_back(
    adopted: Adopted, after_first: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    """The journey every example goes through; returns the second deploy's record.

    r1, then r2 under load, then a rollback to r1 after the switch, then a broken r3 that is
    stopped before its switch (the rollback target it would have replaced is gone with it).
    """
    first = adopted.deploy("r1")
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    assert adopted.last_record()["result"] == "deployed"
    assert adopted.public("/").headers["X-Bluegreen-Release"] == "r1"
    after_first()

    adopted.edit(adopted.example.change)
    second = adopted.deploy("r2")
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
    record = adopted.last_record()
    assert record["result"] == "deployed", record.get("error")
    assert record["load"]["total"]["requests"] > 0
    assert record["load"]["total"]["failures"] == 0  # the switch under load lost nothing
    answer = adopted.public("/")
    assert (answer.headers["X-Bluegreen-Colour"], answer.headers["X-Bluegreen-Release"]) == (
        record["to_colour"],
        "r2",
    )

    rollback = adopted.run(str(adopted.bin / "pytest"), "--bg-rollback", "-p", "no:cacheprovider")
    assert rollback.returncode == 0, rollback.stdout[-3000:] + rollback.stderr[-3000:]
    back = adopted.public("/")
    assert (back.headers["X-Bluegreen-Colour"], back.headers["X-Bluegreen-Release"]) == (
        record["from_colour"],
        "r1",
    )

    adopted.edit(adopted.example.broken)
    broken = adopted.deploy("r3-broken")
    assert broken.returncode != 0
    refused = adopted.last_record()
    assert refused["result"] == "aborted", refused.get("error")
    assert outcomes(refused).get("switch") != "passed"
    assert adopted.public("/").headers["X-Bluegreen-Release"] == "r1"  # never left the good one
    again = adopted.run(str(adopted.bin / "pytest"), "--bg-rollback", "-p", "no:cacheprovider")
    assert again.returncode != 0  # the aborted release is no rollback target
    assert adopted.public("/").headers["X-Bluegreen-Release"] == "r1"
    return record


def test_a_node_stack_with_a_shared_cache_and_no_database(installed: Path) -> None:
    with adopt(NODE, installed) as adopted:
        init_and_configure(adopted)
        settings = tomllib.loads((adopted.home / "bluegreen.toml").read_text())
        assert settings["database"]["kind"] == "none"
        assert settings["services"]["colours"] == ["web-{colour}"]
        caches: list[str] = []

        def cache_container() -> None:
            caches.append(adopted.compose("ps", "-q", "cache").stdout.strip())

        record = deploy_two_releases_a_broken_one_and_roll_back(adopted, cache_container)
        (backup,) = [stage for stage in record["stages"] if stage["name"] == "backup"]
        assert (backup["outcome"], backup["message"]) == ("skipped", "1 not_applicable")
        cache_container()
        assert caches[0]  # started by the first deploy, as a service both colours share
        assert caches[1] == caches[0]  # and never restarted by the next ones
        visits = [adopted.public("/api/visits").json()["visits"] for _ in range(2)]
        assert visits[1] == visits[0] + 1  # the shared cache kept counting across releases


def test_a_mariadb_stack_with_a_worker_and_its_own_migration_tool(installed: Path) -> None:
    with adopt(SHOP, installed) as adopted:
        init_and_configure(adopted)
        settings = tomllib.loads((adopted.home / "bluegreen.toml").read_text())
        assert settings["database"] == {"kind": "mysql", "service": "db"}
        assert settings["services"]["workers"] == ["worker-{colour}"]
        record = deploy_two_releases_a_broken_one_and_roll_back(adopted)
        assert record["backup"]["row_counts"], record["backup"]  # verified by a restore
        assert record["migration"]["applied"] == ["0003_order_notes"]
        new, old = record["to_colour"], record["from_colour"]
        running = adopted.compose("ps", "--services", "--filter", "status=running").stdout.split()
        assert f"worker-{old}" in running  # the rollback's colour works the queue again
        assert f"worker-{new}" not in running
        order = adopted.public_post(
            "/api/orders", {"customer": "Eve", "item": "cup", "quantity": 2}
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the worker of the live colour fulfils it
            orders = {o["id"]: o for o in adopted.public("/api/orders").json()}
            if orders[order["id"]]["status"] == "fulfilled":
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"order {order['id']} not fulfilled by worker-{old} within 60 s")
