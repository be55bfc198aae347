"""Security: what the stack exposes, and what the tool writes down, once every scenario ran.

Runs after ``test_scenarios.py`` on the same stack, so the records, logs, reports and
notifications it searches for secrets are those of every scenario, failures included.
"""

from __future__ import annotations

import stat
import subprocess

import pytest
import requests

from pytest_bluegreen.adapters.engines.project import generated_secrets
from pytest_bluegreen.checks.hardening import RUNTIME_PREFIX
from pytest_bluegreen.core.colours import COLOURS, Colour
from scenarios.harness import PROJECT, ScenarioHost, Webhook

# Processes that may run as root in a container: the init the database uses as PID 1, and the
# loadbalancer's Docker healthcheck: that image starts as root (HAProxy binds 443 and creates
# its admin socket, then runs as its own user), and Docker runs a healthcheck as the image's
# user. Known, and the one root process left (see the README).
ROOT_ALLOWED = {"docker-init", "haproxy-healthc"}


def https(host: ScenarioHost) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(host.config.ca_file)
    return session


def project_containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()


def test_stats_page_and_runtime_api_are_not_public(host: ScenarioHost) -> None:
    with https(host) as session:
        for path in ("/stats", "/haproxy?stats", "/stats;csv", "/;csv", "/healthz"):
            response = session.get(host.config.public_url + path, timeout=10)
            assert "Statistics Report" not in response.text, path
            assert "pxname" not in response.text, path
    (lb,) = host.stack.container_ids(host.config.services.loadbalancer)
    published = subprocess.run(
        ["docker", "port", lb, "8404"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert published, "the stats port is not published at all"
    assert all(address.startswith("127.0.0.1:") for address in published), published
    # The runtime API is a unix socket only this host's root (or its owner) may open.
    mode = host.config.admin_socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) & 0o077 == 0, oct(stat.S_IMODE(mode))


def test_no_secret_in_logs_records_reports_or_notifications(
    host: ScenarioHost, webhook: Webhook
) -> None:
    example = host.config.project_dir / ".env.example"
    secrets = {key: host.config.environment[key] for key in generated_secrets(example)}
    assert all(len(value) >= 16 for value in secrets.values())
    places: dict[str, str] = {
        "deploy output": "".join(host.outputs),
        "notifications": "".join(webhook.received),
    }
    for path in [*host.config.state_dir.rglob("*"), *(host.home / "reports").rglob("*")]:
        if path.is_file() and path.suffix != ".dump" and "tls" not in path.parts:
            places[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    for container in project_containers():
        logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
        places[f"docker logs {container}"] = logs.stdout + logs.stderr
    assert webhook.received, "no notification was sent"
    for suffix in (".html", ".xml", ".prom"):  # reports, JUnit files, metrics
        assert any(name.endswith(suffix) for name in places), f"no {suffix} file was written"
    assert any("deploy.log.jsonl" in name for name in places)
    leaks = [
        f"{key} in {name}" for name, text in places.items() for key, value in secrets.items()
        if value in text
    ]  # fmt: skip
    assert not leaks, leaks


def test_containers_do_not_run_as_root(host: ScenarioHost) -> None:
    found = []
    for container in project_containers():
        top = subprocess.run(
            ["docker", "top", container, "-eo", "user,pid,comm"],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()[1:]  # fmt: skip
        name = subprocess.run(
            ["docker", "inspect", "-f", "{{.Name}}", container],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        for line in top:
            user, pid, command = line.split(None, 2)
            if command.startswith(RUNTIME_PREFIX):  # an exec starting; judged once it runs
                continue
            if user in ("root", "0") and command not in ROOT_ALLOWED:
                found.append(f"{name}: {command} (pid {pid})")
    assert not found, f"running as root: {found}"


@pytest.mark.parametrize("colour", COLOURS)
def test_https_in_both_colours(host: ScenarioHost, colour: Colour) -> None:
    host.stack.revive(colour)  # a retired colour's kept containers, started for the check
    with https(host) as session:
        response = session.get(host.config.preview_url(colour) + "/api/v1/health", timeout=10)
    assert response.status_code == 200
    assert response.json()["colour"] == colour
    assert response.url.startswith("https://")


def test_http_redirects_to_https_with_hsts(host: ScenarioHost) -> None:
    with https(host) as session:
        plain = session.get(
            host.config.public_http_url + "/aptos", timeout=10, allow_redirects=False
        )
        assert plain.status_code == 301
        assert plain.headers["Location"].startswith("https://")
        secure = session.get(host.config.public_url + "/aptos", timeout=10)
    assert secure.status_code == 200
    assert "max-age=31536000" in secure.headers["Strict-Transport-Security"]
