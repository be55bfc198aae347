from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_bluegreen.core.config import ReportingSettings, StackConfig, load_config
from pytest_bluegreen.core.record import DeployRecord
from pytest_bluegreen.reporting import report
from pytest_bluegreen.reporting.chart import load_chart, stage_timeline
from pytest_bluegreen.reporting.secrets import secret_values
from scenarios.harness import ReportReader

SVG = "{http://www.w3.org/2000/svg}"
SERIES = [
    {"t": 0.0, "requests": 20.0, "failures": 0.0, "p50_ms": 10.0, "p99_ms": 30.0},
    {"t": 1.0, "requests": 18.0, "failures": 2.0, "p50_ms": 12.0, "p99_ms": 90.0},
    {"t": 2.0, "requests": 21.0, "failures": 0.0, "p50_ms": 11.0, "p99_ms": 35.0},
]


def test_the_load_chart_draws_every_second_of_the_series() -> None:
    svg = ET.fromstring(load_chart(SERIES, switch_at_s=1.25, rollback_at_s=2.5))
    bars = {
        kind: [(float(r.get("data-t", "")), float(r.get("data-value", ""))) for r in rects]
        for kind in ("requests", "failures")
        for rects in [svg.findall(f"{SVG}rect[@class='{kind}']")]
    }
    assert bars["requests"] == [(0, 20), (1, 18), (2, 21)]
    assert bars["failures"] == [(0, 0), (1, 2), (2, 0)]
    heights = [float(r.get("height", "")) for r in svg.findall(f"{SVG}rect[@class='requests']")]
    assert heights[2] > heights[0] > heights[1] > 0  # drawn to scale
    p99 = svg.find(f"{SVG}polyline[@class='p99']")
    assert p99 is not None
    assert p99.get("data-values") == "30 90 35"
    ys = [float(point.split(",")[1]) for point in p99.get("points", "").split()]
    assert ys[1] < ys[0]
    assert ys[1] < ys[2]
    switch = svg.find(f"{SVG}line[@class='switch']")
    rollback = svg.find(f"{SVG}line[@class='rollback']")
    assert switch is not None
    assert switch.get("data-t") == "1.25"
    assert rollback is not None
    assert rollback.get("data-t") == "2.5"
    assert float(switch.get("x1", "")) < float(rollback.get("x1", ""))


def test_no_rollback_line_without_a_rollback() -> None:
    svg = ET.fromstring(load_chart(SERIES, switch_at_s=1.0))
    assert svg.find(f"{SVG}line[@class='rollback']") is None


def test_the_timeline_places_stages_one_after_the_other() -> None:
    svg = ET.fromstring(stage_timeline([("backup", "passed", 1.0), ("gates", "failed", 3.0)]))
    bars = svg.findall(f"{SVG}rect[@class='stage']")
    assert [(b.get("data-stage"), b.get("data-outcome")) for b in bars] == [
        ("backup", "passed"),
        ("gates", "failed"),
    ]
    assert [float(b.get("data-start", "")) for b in bars] == [0.0, 1.0]
    assert float(bars[1].get("width", "")) == pytest.approx(3 * float(bars[0].get("width", "")))


@pytest.fixture
def stack(tmp_path: Path) -> StackConfig:
    (tmp_path / "docker-compose.blue-green.yml").write_text("services: {}\n")
    (tmp_path / ".env").write_text(
        "POSTGRES_PASSWORD=hunter2-very-secret\nDJANGO_SECRET_KEY=dj-0123456789\n"
        "POSTGRES_USER=aptos_user\nPUBLIC_HTTPS_PORT=443\n"
    )
    (tmp_path / "bluegreen.toml").write_text(
        'webhooks = ["https://hooks.example/services/T0/B0/tok3n-in-path"]\n'
    )
    return load_config(tmp_path, environ={})


def rolled_back() -> DeployRecord:
    record = DeployRecord(
        id="20261129T001503Z-00ab12", release="r42", from_colour="blue", to_colour="green"
    )
    record.started_at = "2026-11-29T00:15:03.000Z"
    record.set_stage("backup", "passed", 1.16)
    record.set_stage("switch", "failed", 7.2, "under load: 2 requests failed")
    record.backup = {
        "file": "/b/x.sql.gz",
        "sha256": "ab" * 32,
        "size_bytes": 4096,
        "row_counts": {"aptos_apto": 12},
        "dump_s": 0.4,
        "verify_s": 0.7,
    }
    record.switch = {"from_colour": "blue", "to_colour": "green", "total_ms": 4.321}
    record.placement = {"api-green": ["node2", "node3"], "db": ["node1"]}
    record.load = {
        "before": {"requests": 60, "failures": 0, "p50_ms": 10.0, "p99_ms": 30.0},
        "first_second": {"requests": 18, "failures": 2, "p50_ms": 12.0, "p99_ms": 90.0},
        "after": {"requests": 21, "failures": 0, "p50_ms": 11.0, "p99_ms": 35.0},
        "total": {"requests": 99, "failures": 2, "p50_ms": 11.0, "p99_ms": 90.0},
        "p99_overhead_ms": 60.0,
        "old_colour_after_switch": 0,
        "series": SERIES,
        "switch_at_s": 1.25,
        "rollback_at_s": 2.5,
        "back_on_old_ms": 12.5,
    }
    record.logs = {"backend-green": "boom: password hunter2-very-secret refused"}
    record.rollback_s = 0.091
    record.rollback_verified_s = 0.42
    record.finish("rolled_back", error="stage switch failed")
    return record


def test_sections_carry_the_records_own_numbers(stack: StackConfig) -> None:
    record = rolled_back()
    (html,) = report.sections(record, stack, secret_values(stack.environment))
    parsed = ReportReader(html)
    assert parsed.sections == [
        "summary",
        "timeline",
        "load",
        "switch",
        "placement",
        "backup",
        "logs",
        "environment",
    ]
    fields = parsed.fields
    assert fields["release"] == "r42"
    assert fields["colours"] == "blue -> green"
    assert fields["result"] == "rolled_back"
    assert fields["total time"] == f"{record.duration_s:.3f} s"
    assert fields["rollback time"] == "0.091 s"
    assert fields["sha256"] == "ab" * 32
    assert fields["rows verified"] == "aptos_apto: 12"
    assert fields["total"] == "99 requests, 2 failed, p50 11.0 ms, p99 90.0 ms"
    assert fields["back on the old colour after"] == "12.5 ms"
    assert fields["total_ms"] == "4.321 ms"
    assert fields["api-green"] == "node2, node3"  # which node ran what
    assert 'class="bluegreen-load-chart"' in html
    assert 'data-values="30 90 35"' in html  # the chart is drawn from this record's series
    assert "boom: password" in html  # the failed colour's log


def test_no_secret_survives_in_the_sections(stack: StackConfig) -> None:
    (html,) = report.sections(rolled_back(), stack, secret_values(stack.environment))
    for secret in ("hunter2-very-secret", "dj-0123456789", "tok3n-in-path"):
        assert secret not in html
    parsed = ReportReader(html)
    assert parsed.fields["POSTGRES_PASSWORD"] == "***"
    assert parsed.fields["POSTGRES_USER"] == "aptos_user"
    assert parsed.fields["reporting.webhooks"] == "('https://hooks.example/***',)"


def test_a_deploy_without_load_says_so(stack: StackConfig) -> None:
    record = DeployRecord(
        id="20261129T001503Z-00ab12", release="r1", from_colour=None, to_colour="blue"
    )
    record.finish("deployed")
    (html,) = report.sections(record, stack, ())
    assert "No load ran across the switch" in html
    assert "bluegreen-logs" not in html


def test_redact_file_masks_a_written_report(tmp_path: Path) -> None:
    path = tmp_path / "r.html"
    path.write_text("<p>captured: hunter2-very-secret</p>")
    assert report.redact_file(path, ["hunter2-very-secret"])
    assert path.read_text() == "<p>captured: ***</p>"
    assert not report.redact_file(path, ["hunter2-very-secret"])
    assert not report.redact_file(tmp_path / "missing.html", ["x" * 8])


def test_a_webhook_with_a_bad_port_does_not_break_the_report(tmp_path: Path) -> None:
    config = StackConfig(
        project_dir=tmp_path,
        env_file=tmp_path / ".env",
        reporting=ReportingSettings(webhooks=("https://hooks.example:99999/T0/tok3n-in-path",)),
    )
    html = report.environment_section(config)
    assert "tok3n-in-path" not in html
    assert ReportReader(html).fields["reporting.webhooks"] == "('<invalid URL>',)"
