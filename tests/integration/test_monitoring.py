"""The optional "monitoring" Compose profile on a real engine, from the deploy's metrics to alerts.

Compose project ``bgmon`` (its own state folder, loopback ports 3909x): the four images built
from Debian packages; their configurations checked by promtool and amtool, the alert rules by
their unit tests; then a rolled-back deploy's metrics written as node_exporter's textfile and
pushed to the Pushgateway, found by Prometheus from both, the alerts firing in Prometheus and
listed by Alertmanager, and every query of the Grafana dashboard answered. Everything of the
project is removed afterwards, on failure too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from pytest_bluegreen.adapters.engines.compose_cli import detect_compose_command
from pytest_bluegreen.core.record import DeployRecord, new_deploy_id, utc_timestamp
from pytest_bluegreen.reporting import metrics
from tests.images import ThrowawayImages
from tests.integration.conftest import REPO

PROJECT = "bgmon"
COMPOSE_FILE = REPO / "docker-compose.blue-green.yml"
SERVICES = ("prometheus", "alertmanager", "pushgateway", "node-exporter")
APP_SERVICES = (
    "db",
    "backend-blue",
    "backend-green",
    "frontend-blue",
    "frontend-green",
    "loadbalancer",
)
IMAGES = {
    "prometheus": "bluegreen-prometheus:2.42",
    "alertmanager": "bluegreen-alertmanager:0.25",
    "pushgateway": "bluegreen-pushgateway:1.5",
    "node-exporter": "bluegreen-node-exporter:1.5",
}
PORTS = {"PROMETHEUS_PORT": "39090", "ALERTMANAGER_PORT": "39093", "PUSHGATEWAY_PORT": "39091"}
PROMETHEUS = f"http://127.0.0.1:{PORTS['PROMETHEUS_PORT']}"
ALERTMANAGER = f"http://127.0.0.1:{PORTS['ALERTMANAGER_PORT']}"
PUSHGATEWAY = f"http://127.0.0.1:{PORTS['PUSHGATEWAY_PORT']}"
# The whole file is interpolated even for services that never start: the app's required secrets
# need a value. None of them reaches a container of this project.
PLACEHOLDERS = {
    "POSTGRES_PASSWORD": "unused-by-monitoring",
    "DJANGO_SECRET_KEY": "unused-by-monitoring",
    "STATS_PASSWORD": "unused-by-monitoring",
}
# Scrapes every 5 s, rules every 5 s: metrics and alerts show up within seconds. The bound is
# for a loaded 2-core machine.
WAIT_S = 90
DEPLOY_ALERTS = {"BluegreenDeployFailed", "BluegreenRollbackHappened"}
PUSH_JOB = "bluegreen"  # the job label the Pushgateway keeps (honor_labels)
TEXTFILE_JOB = "node-exporter"

T = TypeVar("T")


@dataclass
class Monitoring:
    home: Path
    env: dict[str, str]
    command: tuple[str, ...]

    @property
    def metrics_dir(self) -> Path:
        return self.home / "state" / "metrics"

    def compose(
        self, *args: str, timeout: float = 300, check: bool = True, profile: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self.command, "--project-name", PROJECT, "-f", str(COMPOSE_FILE)]
        argv += ["--profile", "monitoring"] if profile else []
        result = subprocess.run(
            [*argv, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"compose {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stderr[-3000:]}{result.stdout[-2000:]}"
            )
        return result


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
    return result.stdout


def project_leftovers() -> dict[str, list[str]]:
    label = f"label=com.docker.compose.project={PROJECT}"
    return {
        "containers": docker("ps", "-a", "-q", "--filter", label, check=False).split(),
        "networks": docker("network", "ls", "-q", "--filter", label, check=False).split(),
    }


@pytest.fixture(scope="module")
def monitoring(throwaway_images: ThrowawayImages) -> Iterator[Monitoring]:
    """The monitoring images built (Compose reuses cached layers); the project removed after."""
    for image in IMAGES.values():
        throwaway_images.add_repository(image.partition(":")[0])
    home = Path(tempfile.mkdtemp(prefix="bgmon-"))
    metrics_dir = home / "state" / "metrics"
    metrics_dir.mkdir(parents=True)
    # Read by node_exporter's "prometheus" user through the bind mount.
    metrics_dir.chmod(0o755)
    env = {**os.environ, **PORTS, **PLACEHOLDERS, "BLUEGREEN_STATE_DIR": str(home / "state")}
    for key in ("COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME", "COMPOSE_FILE"):
        env.pop(key, None)
    mon = Monitoring(home, env, detect_compose_command())
    try:
        mon.compose("down", "--volumes", "--remove-orphans", timeout=180)  # a killed run's
        force_rm = ["--force-rm"] if mon.command == ("docker-compose",) else []
        mon.compose("build", *force_rm, *SERVICES, timeout=1200)
        yield mon
    finally:
        try:
            down = mon.compose("down", "--volumes", "--remove-orphans", timeout=180, check=False)
            left = project_leftovers()
            for container in left["containers"]:
                docker("rm", "-f", "-v", container, check=False)
            for network in left["networks"]:
                docker("network", "rm", network, check=False)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        assert down.returncode == 0, down.stderr
        assert left == {"containers": [], "networks": []}, "left behind after down"


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # the proxy of this machine's environment is not for loopback
        yield session


def get_json(http: requests.Session, url: str, **params: str) -> Any:
    with http.get(url, params=params, timeout=10) as response:
        response.raise_for_status()
        return response.json()


def poll(what: str, attempt: Callable[[], T | None], timeout_s: float = WAIT_S) -> T:
    """``attempt()`` until it returns something other than None (or raises past the deadline)."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = attempt()
        except (requests.RequestException, ValueError) as exc:
            value, last = None, exc
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f}s (last: {last!r})")
        time.sleep(1)


def query(http: requests.Session, expr: str) -> list[dict[str, Any]]:
    answer = get_json(http, f"{PROMETHEUS}/api/v1/query", query=expr)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


@pytest.fixture(scope="module")
def running(monitoring: Monitoring, http: requests.Session) -> Monitoring:
    """The profile started by name, Prometheus ready."""
    monitoring.compose("up", "-d", "--no-build", *SERVICES, timeout=300)
    ids = monitoring.compose("ps", "-q", *SERVICES, timeout=60).stdout.split()
    assert len(ids) == len(SERVICES), ids

    def healthy() -> bool | None:
        states = docker("inspect", "--format", "{{.State.Health.Status}}", *ids).split()
        return True if states == ["healthy"] * len(ids) else None

    poll("every monitoring container healthy (its healthcheck passes)", healthy)
    return monitoring


def rolled_back_record(release: str) -> DeployRecord:
    started = datetime.now(timezone.utc) - timedelta(seconds=95)
    record = DeployRecord(
        id=new_deploy_id(started),
        release=release,
        from_colour="blue",
        to_colour="green",
        started_at=utc_timestamp(started),
    )
    for stage, outcome, seconds in [
        ("prerequisites", "passed", 1.5),
        ("colours", "passed", 0.2),
        ("backup", "passed", 6.0),
        ("build", "passed", 30.0),
        ("migration", "passed", 12.0),
        ("bring_up", "passed", 20.0),
        ("gates", "passed", 15.0),
        ("switch", "failed", 7.5),
    ]:
        record.set_stage(stage, outcome, seconds)
    record.load = {"total": {"requests": 240, "failures": 3}, "p99_overhead_ms": 35.0}
    record.rollback_s = 0.08
    record.finish("rolled_back", error="3 requests failed across the switch (budget 0)")
    return record


@dataclass
class Published:
    textfile: DeployRecord
    pushed: DeployRecord


@pytest.fixture(scope="module")
def published(running: Monitoring, http: requests.Session) -> Published:
    """A rolled-back deploy as a textfile for node_exporter, another pushed; both scraped."""
    textfile, pushed = rolled_back_record("r-textfile"), rolled_back_record("r-pushed")
    path = running.metrics_dir / "bluegreen.prom"
    metrics.write_textfile(path, metrics.render(textfile, [textfile], PROJECT))
    problem = metrics.push(PUSHGATEWAY, metrics.render(pushed, [pushed], PROJECT), PROJECT)
    assert problem is None, problem

    def both_sources() -> list[dict[str, Any]] | None:
        found = query(http, f'bluegreen_deploy_success{{project="{PROJECT}"}}')
        jobs = {series["metric"].get("job") for series in found}
        return found if jobs >= {TEXTFILE_JOB, PUSH_JOB} else None

    poll("bluegreen_deploy_success from node_exporter and the Pushgateway", both_sources)
    return Published(textfile, pushed)


def compose_services(mon: Monitoring, *, profile: bool) -> set[str]:
    out = mon.compose("config", "--services", profile=profile, timeout=60).stdout
    return set(out.split())


def test_the_profile_leaves_the_app_services_alone(monitoring: Monitoring) -> None:
    # What the deploy runs, without the profile: the file is valid and the app is unchanged.
    monitoring.compose("config", "--quiet", profile=False, timeout=60)
    without = compose_services(monitoring, profile=False)
    assert without >= set(APP_SERVICES)
    # Compose v2 leaves a profile's services out; v1 lists every service of the file.
    assert without - set(APP_SERVICES) <= set(SERVICES)
    assert compose_services(monitoring, profile=True) == {*APP_SERVICES, *SERVICES}
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for image in IMAGES.values():
        assert f"image: {image}\n" in text


def run_in_image(service: str, entrypoint: str, *args: str, mounts: dict[Path, str]) -> str:
    volumes = [arg for host, inside in mounts.items() for arg in ("-v", f"{host}:{inside}:ro")]
    argv = ["run", "--rm", "--network", "none", "--entrypoint", entrypoint, *volumes]
    return docker(*argv, IMAGES[service], *args, timeout=120)


def test_promtool_and_amtool_accept_the_configuration(monitoring: Monitoring) -> None:
    rules = REPO / "monitoring" / "prometheus"
    mounts = {rules / "prometheus.yml": "/etc/prometheus/prometheus.yml"}
    mounts[rules / "alerts.yml"] = "/etc/prometheus/alerts.yml"
    out = run_in_image(
        "prometheus", "promtool", "check", "config", "/etc/prometheus/prometheus.yml", mounts=mounts
    )
    assert "SUCCESS" in out
    out = run_in_image(
        "prometheus", "promtool", "check", "rules", "/etc/prometheus/alerts.yml", mounts=mounts
    )
    assert "SUCCESS: 4 rules found" in out
    config = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"
    out = run_in_image(
        "alertmanager",
        "amtool",
        "check-config",
        "/etc/prometheus/alertmanager.yml",
        mounts={config: "/etc/prometheus/alertmanager.yml"},
    )
    assert "SUCCESS" in out


def test_the_alert_rules_pass_their_unit_tests(monitoring: Monitoring) -> None:
    rules = REPO / "monitoring" / "prometheus"
    out = run_in_image(
        "prometheus",
        "promtool",
        "test",
        "rules",
        "/rules/alerts_test.yml",
        mounts={rules: "/rules"},
    )
    assert "SUCCESS" in out


def test_the_images_are_small_and_run_as_a_user(running: Monitoring) -> None:
    for service, image in IMAGES.items():
        size = int(docker("image", "inspect", "--format", "{{.Size}}", image))
        assert size < 400 * 1024 * 1024, f"{image}: {size / 1e6:.0f} MB"
        uid = running.compose("exec", "-T", service, "id", "-u", timeout=60).stdout.strip()
        assert uid != "0", f"{service} runs as root"


def test_only_loopback_ports_are_published(running: Monitoring) -> None:
    for service, port, env_key in (
        ("prometheus", 9090, "PROMETHEUS_PORT"),
        ("alertmanager", 9093, "ALERTMANAGER_PORT"),
        ("pushgateway", 9091, "PUSHGATEWAY_PORT"),
    ):
        published = running.compose("port", service, str(port), timeout=60).stdout.strip()
        assert published == f"127.0.0.1:{PORTS[env_key]}"
    # Nothing of the app started, and no network of the project was made for the monitoring.
    names = docker(
        "ps", "--format", "{{.Label \"com.docker.compose.service\"}}",
        "--filter", f"label=com.docker.compose.project={PROJECT}",
    ).split()  # fmt: skip
    assert sorted(names) == sorted(SERVICES)
    networks = docker("network", "ls", "--format", "{{.Name}}").split()
    assert f"{PROJECT}_monitoring" not in networks
    assert f"{PROJECT}_default" not in networks


def test_a_restarted_service_is_found_again(running: Monitoring, http: requests.Session) -> None:
    # Links follow a restarted container to its new address (the default bridge may give it
    # another one): Prometheus still scrapes the Pushgateway afterwards.
    running.compose("restart", "pushgateway", timeout=120)
    restarted = time.time()

    def pushgateway_up() -> bool | None:
        found = query(http, f'up{{job="pushgateway"}} == 1 and timestamp(up) > {restarted:.3f}')
        return True if found else None

    poll("the Pushgateway scraped after its restart", pushgateway_up)


def test_prometheus_reads_the_deploy_from_the_textfile_and_the_pushgateway(
    published: Published, http: requests.Session
) -> None:
    for job, record in ((TEXTFILE_JOB, published.textfile), (PUSH_JOB, published.pushed)):
        selector = f'project="{PROJECT}",job="{job}"'
        (success,) = query(http, f"bluegreen_deploy_success{{{selector}}}")
        assert float(success["value"][1]) == 0.0
        (info,) = query(http, f"bluegreen_deploy_info{{{selector}}}")
        assert info["metric"]["release"] == record.release
        assert info["metric"]["deploy_id"] == record.id
        assert info["metric"]["result"] == "rolled_back"
        (rollbacks,) = query(http, f"bluegreen_rollbacks_total{{{selector}}}")
        assert float(rollbacks["value"][1]) == 1.0
        (switch,) = query(http, f'bluegreen_stage_duration_seconds{{{selector},stage="switch"}}')
        assert switch["metric"]["outcome"] == "failed"
        assert float(switch["value"][1]) == 7.5
        (failed,) = query(http, f"bluegreen_switch_failed_requests{{{selector}}}")
        assert float(failed["value"][1]) == 3.0
        (duration,) = query(http, f"bluegreen_deploy_duration_seconds{{{selector}}}")
        assert float(duration["value"][1]) == record.duration_s


def alerts_by_job(alerts: list[dict[str, Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for alert in alerts:
        labels = alert["labels"]
        if labels.get("project") == PROJECT:
            found.setdefault(labels.get("job", ""), set()).add(labels["alertname"])
    return found


def test_the_deploy_alerts_fire_and_reach_alertmanager(
    published: Published, http: requests.Session
) -> None:
    def firing() -> list[dict[str, Any]] | None:
        alerts = get_json(http, f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
        alerts = [alert for alert in alerts if alert["state"] == "firing"]
        jobs = alerts_by_job(alerts)
        done = all(jobs.get(job, set()) >= DEPLOY_ALERTS for job in (TEXTFILE_JOB, PUSH_JOB))
        return alerts if done else None

    alerts = poll("BluegreenDeployFailed and BluegreenRollbackHappened firing", firing)
    rollback = next(
        alert
        for alert in alerts
        if alert["labels"]["alertname"] == "BluegreenRollbackHappened"
        and alert["labels"]["job"] == TEXTFILE_JOB
    )
    assert rollback["labels"]["release"] == published.textfile.release
    assert rollback["labels"]["severity"] == "critical"
    assert "release r-textfile was rolled back" in rollback["annotations"]["summary"]
    assert "BluegreenSwitchFailedRequests" in alerts_by_job(alerts)[TEXTFILE_JOB]

    # Listed by Alertmanager: the rollback active (it pages), the failed-deploy alert of the
    # same deploy suppressed by the inhibit rule.
    expected = {}
    for job in (TEXTFILE_JOB, PUSH_JOB):
        expected[("BluegreenRollbackHappened", job)] = "active"
        expected[("BluegreenDeployFailed", job)] = "suppressed"
    seen: dict[tuple[str, str], str] = {}

    def listed() -> bool | None:
        seen.clear()
        for alert in get_json(http, f"{ALERTMANAGER}/api/v2/alerts"):
            labels = alert["labels"]
            if labels.get("project") == PROJECT:
                seen[labels["alertname"], labels["job"]] = alert["status"]["state"]
        return True if all(seen.get(key) == state for key, state in expected.items()) else None

    try:
        poll("the alerts listed by Alertmanager", listed)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; Alertmanager lists {seen}") from None


def dashboard() -> dict[str, Any]:
    path = REPO / "monitoring" / "grafana" / "bluegreen-dashboard.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def dashboard_exprs() -> list[str]:
    board = dashboard()
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    exprs += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    return exprs


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
PROMQL_WORDS |= {"and", "or", "unless"}


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression reads (not functions, labels or keywords)."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
        word, rest = match.group(), bare[match.end() :].lstrip()
        if word not in PROMQL_WORDS and not rest.startswith("("):
            names.add(word)
    return names


def test_the_dashboard_reads_only_metrics_that_metrics_py_writes() -> None:
    record = rolled_back_record("r1")
    rendered = {
        line.split("{")[0].split(" ")[0]
        for line in metrics.render(record, [record], "p").splitlines()
        if line and not line.startswith("#")
    }
    board = dashboard()
    assert board["schemaVersion"] >= 36
    assert [v["type"] for v in board["templating"]["list"]] == ["datasource", "query"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, target["expr"]
            assert names <= rendered, f"{panel['title']}: {names - rendered}"
            used |= names
    # Every metric the deploy writes is on the dashboard.
    assert used == rendered


def test_every_dashboard_query_answers(published: Published, http: requests.Session) -> None:
    for expr in dashboard_exprs():
        result = query(http, expr.replace("$project", PROJECT))
        if not expr.startswith("changes("):  # deploy annotations: only when a deploy lands
            assert result, f"no data for {expr}"
