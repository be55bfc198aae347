from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pytest_bluegreen.core.config import ReportingSettings, StackConfig
from pytest_bluegreen.core.record import DeployRecord, Result
from pytest_bluegreen.reporting.metrics import publish, push, render, write_textfile
from pytest_bluegreen.reporting.secrets import SecretPolicy


def record(
    result: Result = "rolled_back", deploy_id: str = "20261129T001503Z-00ab12"
) -> DeployRecord:
    rec = DeployRecord(id=deploy_id, release="r42", from_colour="blue", to_colour="green")
    rec.started_at = "2026-11-29T00:15:03.000Z"
    rec.set_stage("backup", "passed", 1.16)
    rec.set_stage("switch", "failed", 7.2, "2 requests failed")
    rec.load = {"total": {"requests": 126, "failures": 2}, "p99_overhead_ms": 4.5}
    rec.rollback_s = 0.083
    rec.placement = {"api-green": ["node2", "node3", "node3"]}
    rec.finish(result, error="x")
    return rec


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found[(name, frozenset({"project": "aptos", **labels}.items()))]


def test_the_text_parses_and_carries_the_records_values() -> None:
    latest = record()
    earlier = record("deployed", "20261128T001503Z-00ab12")
    found = samples(render(latest, [latest, earlier], "aptos"))
    assert value(found, "bluegreen_deploy_success") == 0
    assert value(found, "bluegreen_deploy_duration_seconds") == latest.duration_s
    assert (
        value(found, "bluegreen_stage_duration_seconds", stage="backup", outcome="passed") == 1.16
    )
    assert value(found, "bluegreen_stage_duration_seconds", stage="switch", outcome="failed") == 7.2
    assert value(found, "bluegreen_switch_requests") == 126
    assert value(found, "bluegreen_switch_failed_requests") == 2
    assert value(found, "bluegreen_switch_p99_overhead_seconds") == pytest.approx(0.0045)
    assert value(found, "bluegreen_rollback_seconds") == 0.083
    assert value(found, "bluegreen_rollbacks_total") == 1
    assert value(found, "bluegreen_service_tasks", service="api-green", node="node3") == 2
    assert value(found, "bluegreen_service_tasks", service="api-green", node="node2") == 1
    assert value(found, "bluegreen_deploys_total", result="deployed") == 1
    assert value(found, "bluegreen_deploys_total", result="aborted") == 0
    info_labels = {
        "deploy_id": latest.id,
        "release": "r42",
        "from_colour": "blue",
        "to_colour": "green",
        "result": "rolled_back",
    }
    assert value(found, "bluegreen_deploy_info", **info_labels) == 1


def test_a_deploy_without_load_or_rollback_has_no_such_metrics() -> None:
    rec = DeployRecord(
        id="20261129T001503Z-00ab12", release="r1", from_colour=None, to_colour="blue"
    )
    rec.finish("deployed")
    names = {name for name, _ in samples(render(rec, [rec], "aptos"))}
    assert "bluegreen_switch_failed_requests" not in names
    assert "bluegreen_rollback_seconds" not in names
    assert value(samples(render(rec, [rec], "aptos")), "bluegreen_deploy_success") == 1


def test_textfile_is_replaced_whole_and_readable_by_node_exporter(tmp_path: Path) -> None:
    path = tmp_path / "metrics" / "bluegreen.prom"
    write_textfile(path, "a 1\n")
    write_textfile(path, "a 2\n")
    assert path.read_text() == "a 2\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["bluegreen.prom"]


class Gateway(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []  # noqa: RUF012
    status = 200

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Gateway.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(Gateway.status)
        self.end_headers()
        self.wfile.write(b"nope" if Gateway.status >= 400 else b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    Gateway.received, Gateway.status = [], 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_push_puts_the_text_grouped_by_job_and_project(gateway: str) -> None:
    text = render(record(), [record()], "aptos")
    assert push(gateway, text, "aptos") is None
    ((path, content_type, body),) = Gateway.received
    assert path == "/metrics/job/bluegreen/project/aptos"
    assert content_type.startswith("text/plain")
    assert body.decode() == text


def test_push_reports_a_refusal_and_an_unreachable_gateway(gateway: str) -> None:
    Gateway.status = 400
    assert push(gateway, "a 1\n", "aptos") == "HTTP 400: nope"
    problem = push("http://127.0.0.1:9/", "a 1\n", "aptos", timeout_s=2)
    assert problem is not None
    assert problem.startswith("ConnectionError")


def test_label_values_go_through_the_secret_policy() -> None:
    rec = record()
    rec.release = "r42-rel-s3cret"
    text = render(rec, [rec], "aptos", SecretPolicy(("rel-s3cret",)))
    assert "rel-s3cret" not in text
    info = value(
        samples(text),
        "bluegreen_deploy_info",
        deploy_id=rec.id,
        release="r42-***",
        from_colour="blue",
        to_colour="green",
        result="rolled_back",
    )
    assert info == 1


def test_publish_masks_the_pushed_text_and_its_problems(tmp_path: Path, gateway: str) -> None:
    Gateway.status = 400
    with_login = gateway.replace("http://", "http://bot:gw-pass-1234@")
    config = StackConfig(
        project_dir=tmp_path,
        state_dir=tmp_path / "state",
        reporting=ReportingSettings(pushgateway_url=with_login),
    )
    rec = record()
    rec.release = "r42-rel-s3cret"
    policy = SecretPolicy(("rel-s3cret", "gw-pass-1234"))
    (problem,) = publish(config, rec, policy)
    assert problem == f"push to {gateway.replace('http://', 'http://***@')}: HTTP 400: nope"
    ((_, _, body),) = Gateway.received
    for written in (body.decode(), config.metrics_path.read_text()):
        assert "rel-s3cret" not in written
        assert 'release="r42-***"' in written
