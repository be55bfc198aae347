from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.adapters.engines.compose_cli import (
    Compose,
    PublishedPort,
    ServiceSpec,
    detect_compose_command,
    healthcheck_argv,
    parse_duration,
)
from pytest_bluegreen.core.errors import CommandTimeout, ComposeError, DiskFull, DockerUnavailable


def completed(
    returncode: int, stdout: str = "", stderr: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(args=[], returncode=returncode, stdout=stdout, stderr=stderr)


def test_prefers_compose_v2_when_the_plugin_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert detect_compose_command(lambda *a, **k: completed(0)) == ("docker", "compose")


def test_falls_back_to_v1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert detect_compose_command(lambda *a, **k: completed(1)) == ("docker-compose",)


def test_no_compose_at_all_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(
        DockerUnavailable, match=r"neither 'docker compose' .* nor 'docker-compose'"
    ):
        detect_compose_command(lambda *a, **k: completed(1))


class Recorder:
    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((argv, kwargs))
        return self.result


def make(recorder: Recorder, command: tuple[str, ...] = ("docker-compose",)) -> Compose:
    return Compose(
        command=command,
        files=(Path("/p/base.yml"), Path("/p/override.yml")),
        project_name="shop",
        project_dir=Path("/p"),
        env={"A": "1"},
        run_process=recorder,
    )


def test_layers_files_in_order_and_passes_the_environment() -> None:
    recorder = Recorder(completed(0))
    make(recorder, ("docker", "compose")).up(["backend-green"])
    argv, kwargs = recorder.calls[0]
    assert argv == [
        "docker", "compose", "--project-name", "shop",
        "-f", "/p/base.yml", "-f", "/p/override.yml",
        "up", "-d", "--no-build", "--no-deps", "backend-green",
    ]  # fmt: skip
    # The project's name reaches the files too: the reference stack names its images after it.
    assert kwargs["env"] == {"A": "1", "COMPOSE_PROJECT_NAME": "shop"}
    assert kwargs["cwd"] == Path("/p")


def test_failure_carries_the_command_and_its_output() -> None:
    recorder = Recorder(completed(1, stderr="ERROR: No such service: nope\n"))
    with pytest.raises(ComposeError, match=r"'up -d --no-build --no-deps nope' failed \(exit 1\)"):
        make(recorder).up(["nope"])
    with pytest.raises(ComposeError, match="No such service: nope"):
        make(recorder).up(["nope"])


def test_timeout_becomes_a_compose_error() -> None:
    def slow(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    compose = Compose(("docker-compose",), (), "p", Path("/p"), {}, run_process=slow)
    with pytest.raises(ComposeError, match="did not finish within 60s"):
        compose.services()


def test_one_off_containers_get_their_environment_as_flags() -> None:
    recorder = Recorder(completed(0))
    compose = make(recorder)
    compose.run_once("backend-green", ["python3", "manage.py", "migrate"], env={"DB": "x_copy"})
    run = recorder.calls[0][0][7:]
    assert re.fullmatch(r"shop-backend-green-run-[0-9a-f]{8}", run[5])
    assert run[:5] + run[6:] == [
        "run", "--rm", "--no-deps", "-T", "--name", "-e", "DB=x_copy",
        "backend-green", "python3", "manage.py", "migrate",
    ]  # fmt: skip


def test_a_one_off_command_past_its_bound_is_killed_with_its_container() -> None:
    calls: list[list[str]] = []

    def runner(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        if "run" in argv:
            raise subprocess.TimeoutExpired(argv, kwargs["timeout"])
        return completed(0)

    compose = make(Recorder(completed(0)))
    compose = dataclasses.replace(compose, run_process=runner)
    with pytest.raises(CommandTimeout, match=r"'run .* migrate' did not finish within 5s"):
        compose.run_once("backend-green", ["python3", "manage.py", "migrate"], timeout=5)
    name = calls[0][calls[0].index("--name") + 1]
    assert calls[1] == ["docker", "rm", "-f", name]


def test_v1_build_removes_the_containers_of_failed_steps() -> None:
    v1, v2 = Recorder(completed(0)), Recorder(completed(0))
    make(v1, ("docker-compose",)).build(["backend-green"])
    make(v2, ("docker", "compose")).build(["backend-green"])
    assert v1.calls[0][0][-3:] == ["build", "--force-rm", "backend-green"]
    assert v2.calls[0][0][-2:] == ["build", "backend-green"]


V1_CONFIG = """
services:
  db:
    build:
      context: /p/db
    image: shop-db:15
  web-blue:
    build:
      context: /p/web
    ports:
    - 0.0.0.0:80:80/tcp
    - 127.0.0.1:8441:8441/tcp
    - "9000"
  cache:
    image: redis:7
  prometheus:
    image: prom:2
    profiles:
    - monitoring
"""

V2_CONFIG = """
name: shop
services:
  web-blue:
    build:
      context: /p/web
    ports:
      - mode: ingress
        target: 443
        published: "8443"
        protocol: tcp
      - mode: ingress
        host_ip: 127.0.0.1
        target: 8404
        published: "8404"
        protocol: tcp
"""


def test_services_as_compose_v1_resolves_them() -> None:
    services = make(Recorder(completed(0, stdout=V1_CONFIG))).services()
    assert services == {
        "db": ServiceSpec("db", "shop-db:15", builds=True),
        "web-blue": ServiceSpec(
            "web-blue",
            "shop_web-blue",  # v1's own name for a built image the file does not name
            builds=True,
            ports=(PublishedPort("0.0.0.0", 80), PublishedPort("127.0.0.1", 8441)),
        ),
        "cache": ServiceSpec("cache", "redis:7", builds=False),
        "prometheus": ServiceSpec("prometheus", "prom:2", builds=False, profiles=("monitoring",)),
    }


def test_services_as_compose_v2_resolves_them() -> None:
    services = make(Recorder(completed(0, stdout=V2_CONFIG)), ("docker", "compose")).services()
    assert services["web-blue"] == ServiceSpec(
        "web-blue",
        "shop-web-blue",
        builds=True,
        ports=(PublishedPort("0.0.0.0", 8443), PublishedPort("127.0.0.1", 8404)),
    )


def test_a_full_disk_during_a_build_is_one_clear_error() -> None:
    output = (
        "Step 3/9 : RUN apt-get install -y postgresql\nE: write error: No space left on device\n"
    )
    with pytest.raises(DiskFull, match=r"^no space left on device while building db: free some"):
        make(Recorder(completed(1, stdout=output))).build(["db"])
    with pytest.raises(ComposeError, match="unknown instruction"):
        make(Recorder(completed(1, stdout="unknown instruction: RUNN"))).build(["db"])


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("20s", 20.0), ("1m30s", 90.0), ("1.5s", 1.5), ("500ms", 0.5), ("1h", 3600.0), ("45", 45.0)],
)
def test_stop_grace_period_in_seconds(value: str, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "20 s", "1m30", "soon", "-5s", "5d"])
def test_a_stop_grace_period_that_is_no_duration_is_an_error(value: str) -> None:
    with pytest.raises(ComposeError, match="is not a duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("test", "argv"),
    [
        (("CMD", "pg_isready", "-q"), ["pg_isready", "-q"]),
        (("CMD-SHELL", "pg_isready -U $U"), ["sh", "-c", "pg_isready -U $U"]),
        (("pg_isready -q",), ["sh", "-c", "pg_isready -q"]),
        (("NONE",), None),
        ((), None),
        (("CMD",), None),
    ],
)  # fmt: skip
def test_a_healthcheck_as_a_command(test: tuple[str, ...], argv: list[str] | None) -> None:
    assert healthcheck_argv(test) == argv


CONTAINER_CONFIG = """
services:
  db:
    image: shop-db:15
    init: true
    environment:
      POSTGRES_PASSWORD: a$$b
      UNSET: null
    healthcheck:
      test:
      - CMD-SHELL
      - pg_isready -U "$${POSTGRES_USER}"
  worker-blue:
    image: shop-worker:r3
    entrypoint: /entry.sh --wait
    command: ["celery", "worker", "--pidfile=$$HOME/p"]
    user: "10001"
    working_dir: /app
    stop_grace_period: 1m30s
    environment:
    - DATABASE_URL=postgres://u:p@db/shop
    healthcheck:
      test: celery inspect ping
  web-blue:
    image: shop-web:r3
    healthcheck:
      disable: true
"""


def test_what_a_container_of_a_service_is_started_with() -> None:
    services = make(Recorder(completed(0, stdout=CONTAINER_CONFIG))).services()
    db, worker, web = services["db"], services["worker-blue"], services["web-blue"]
    # Compose's own "$$" escapes are undone: the container gets one "$".
    assert db.environment == {"POSTGRES_PASSWORD": "a$b"}
    assert db.init
    assert db.healthcheck_argv() == ["sh", "-c", 'pg_isready -U "${POSTGRES_USER}"']
    assert (db.command, db.entrypoint, db.user, db.stop_grace_s) == (None, None, None, None)
    assert worker.environment == {"DATABASE_URL": "postgres://u:p@db/shop"}
    assert worker.entrypoint == ("/entry.sh", "--wait")
    assert worker.command == ("celery", "worker", "--pidfile=$HOME/p")
    assert (worker.user, worker.working_dir, worker.stop_grace_s) == ("10001", "/app", 90.0)
    assert worker.healthcheck_argv() == ["sh", "-c", "celery inspect ping"]
    assert web.healthcheck_argv() is None
