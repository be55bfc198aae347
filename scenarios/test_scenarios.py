"""``pytest scenarios/``: every scenario of the library against the real stack.

For each: the result in the deploy record, who serves afterwards, the users' failed requests
(0 unless the fault itself takes users down), the data (rows and a checksum of every row) before
and after, nothing left behind (one-off containers, networks), the lock free, and the message a
person reads.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pytest_bluegreen.core.record import DeployRecord, RecordStore
from scenarios.harness import ReportReader, ScenarioHost, Users
from scenarios.library import LIBRARY, Scenario


@pytest.mark.parametrize("scenario", LIBRARY, ids=lambda s: s.name)
def test_scenario(host: ScenarioHost, scenario: Scenario) -> None:
    if scenario.prepare is not None:
        scenario.prepare(host)
    live, release = host.answer()
    data = host.data()
    containers = host.containers()
    last_id = host.last_record().id
    fill = {"home": host.home, "idle": host.idle()}
    compose = None
    if scenario.release_yaml:
        override = host.release_override(scenario.name, scenario.release_yaml.format(**fill))
        compose = [override]
    settings = None
    if scenario.settings:
        settings = host.settings_with(scenario.name, scenario.settings.format(**fill))
    try:
        with Users(host) as users:
            deploy = host.start_deploy(f"scn-{scenario.name}", compose, settings)
            action = scenario.action
            triggers = [(scenario.at, lambda: action(host, deploy))] if action else []
            deploy.start_reading(triggers)
            output = deploy.wait()
            if scenario.repaired_by_next_run:
                killed = host.last_record()
                repair = host.start_deploy(f"scn-{scenario.name}-next")
                repair.start_reading([])
                output += repair.wait()
                assert repair.proc.returncode == 0
                assert f"deploy {killed.id} (pid {killed.pid}) was killed; repairing" in output
    finally:
        if scenario.cleanup is not None:
            scenario.cleanup(host)
    host.outputs.append(output)
    print(output[-6000:])

    assert scenario.message.format(**fill) in output
    result = "usage_error"
    if scenario.result == ("usage_error",):
        assert deploy.proc.returncode == pytest.ExitCode.USAGE_ERROR
        assert host.last_record().id == last_id  # refused before anything was written
        assert host.answer() == (live, release)
    elif scenario.repaired_by_next_run:
        record = RecordStore(host.config.state_dir).load(killed.id)
        assert record.result in scenario.result, record
        result = record.result
        assert host.last_record().result == "deployed"
        assert host.answer() == (host.last_record().to_colour, f"scn-{scenario.name}-next")
        check_report_and_metrics(host, host.last_record())
    else:
        record = host.last_record()
        assert record.release == f"scn-{scenario.name}"
        assert record.result in scenario.result, record.error
        result = record.result
        assert f"== deploy {record.id}: {record.result}" in output  # the conclusion, on screen
        if scenario.failed_stage is not None:
            outcomes = {stage.name: stage.outcome for stage in record.stages}
            assert outcomes.get(scenario.failed_stage) == "failed", outcomes
            assert f"!! stage {scenario.failed_stage} " in output
        if record.result == "deployed":
            assert deploy.proc.returncode == 0
            assert host.answer() == (record.to_colour, record.release)
            assert "-- stage retire passed in " in output  # live progress: each stage's end
        if record.load:  # and a line a second while the load windows run
            assert re.search(r"\[switch +[\d.]+s\] load before the switch: \d+ req/s", output)
        else:
            assert deploy.proc.returncode != 0
            assert host.answer() == (live, release)
            idle = host.config.services.services_of(record.to_colour or host.idle())
            assert host.stack.running_services(idle) == []  # stopped, kept for their logs
        if record.result == "rolled_back":
            assert record.rollback_s is not None
            assert record.rollback_s < 1.0  # from the failed verdict to the old colour serving
        check_report_and_metrics(host, record)

    assert users.requests > 0
    if not scenario.users_may_fail:
        assert users.failed == 0, f"{users.failed} of {users.requests} user requests failed"
    assert host.data() == data
    assert host.leftovers(containers) == []
    assert host.lock_free()
    host.survived.append(
        {
            "scenario": scenario.name,
            "fault": scenario.fault,
            "result": result,
            "user_requests": users.requests,
            "user_requests_failed": users.failed,
            "rows_lost": 0,  # asserted above: rows and their checksums are unchanged
        }
    )
    if scenario.name == "two-at-once":
        assert host.notes["second_rc"] != "0"
        assert "another deploy is running on this stack" in host.notes["second"]


def check_report_and_metrics(host: ScenarioHost, record: DeployRecord) -> None:
    """The deploy's HTML report, JUnit file and metrics say what its record says."""
    assert record.reports is not None
    html = Path(record.reports["html"])
    assert html == host.home / "reports" / f"{record.release}.html"
    report = ReportReader(html.read_text(encoding="utf-8"))
    assert {"summary", "timeline", "load", "backup", "environment"} <= set(report.sections)
    assert report.fields["result"] == record.result
    assert report.fields["release"] == record.release
    assert report.fields["total time"] == f"{record.duration_s:.3f} s"
    drawn = [(mark["stage"], mark["outcome"]) for mark in report.marks["stage"]]
    assert drawn == [(stage.name, stage.outcome) for stage in record.stages]
    if record.backup:
        assert report.fields["sha256"] == record.backup["sha256"]
    if record.load:  # the chart is drawn from this deploy's own series
        series = record.load["series"]
        assert [float(m["value"]) for m in report.marks["requests"]] == [
            row["requests"] for row in series
        ]
        assert [float(m["value"]) for m in report.marks["failures"]] == [
            row["failures"] for row in series
        ]
        assert float(report.marks["switch"][0]["t"]) == pytest.approx(record.load["switch_at_s"])
    if record.result == "rolled_back":
        assert report.fields["rollback time"] == f"{record.rollback_s:.3f} s"
        if record.load and record.load.get("rollback_at_s") is not None:
            assert float(report.marks["rollback"][0]["t"]) == pytest.approx(
                record.load["rollback_at_s"]
            )
    if record.result in ("aborted", "rolled_back") and record.logs:
        assert "logs" in report.sections
    junit = ET.parse(record.reports["junit"]).getroot()
    assert junit.find("testsuite") is not None
    metrics = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(host.config.metrics_path.read_text())
        for sample in family.samples
    }
    info = [
        dict(labels)
        for (name, labels), value in metrics.items()
        if name == "bluegreen_deploy_info" and value == 1
    ]
    assert [(i["deploy_id"], i["result"]) for i in info] == [(record.id, record.result)]
    project = (("project", host.config.project_name),)
    assert metrics[("bluegreen_deploy_duration_seconds", project)] == record.duration_s
    assert metrics[("bluegreen_deploy_success", project)] == float(record.result == "deployed")
