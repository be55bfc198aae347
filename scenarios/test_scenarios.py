"""``pytest scenarios/``: every scenario of the library against the real stack.

For each: the result in the deploy record, who serves afterwards, the users' failed requests
(0 unless the fault itself takes users down), the data (rows and a checksum of every row) before
and after, nothing left behind (one-off containers, networks), the lock free, and the message a
person reads.
"""

from __future__ import annotations

import pytest

from pytest_bluegreen.record import RecordStore
from scenarios.harness import ScenarioHost, Users
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
        else:
            assert deploy.proc.returncode != 0
            assert host.answer() == (live, release)
            idle = host.config.services_of(record.to_colour or host.idle())
            assert host.stack.running_services(idle) == []  # stopped, kept for their logs
        if record.result == "rolled_back":
            assert record.rollback_s is not None
            assert record.rollback_s < 1.0  # from the failed verdict to the old colour serving

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
