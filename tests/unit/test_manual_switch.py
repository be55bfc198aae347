"""``bluegreen switch``: under the deploy lock, and recorded as the live colour."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_bluegreen import commands
from pytest_bluegreen.adapters.routers.haproxy import read_map_file, write_map_file
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.errors import DeployError, LockError
from pytest_bluegreen.core.lock import DeployLock
from pytest_bluegreen.core.record import RecordStore
from pytest_bluegreen.core.state import ColourState, load_state, save_state
from tests.unit.fake_haproxy import FakeRuntimeAPI
from tests.unit.reference import stack_config


@pytest.fixture
def config() -> Iterator[StackConfig]:
    # Unix socket paths are limited to about 100 bytes; tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="bg") as name:
        config = stack_config(Path(name), state_dir=Path(name) / "state")
        config.lb_state_dir.mkdir(parents=True)
        write_map_file(config.map_file, "blue")
        save_state(config.state_file, ColourState(live="blue", releases={"blue": "r1"}))
        yield config


@pytest.fixture
def haproxy(config: StackConfig) -> Iterator[FakeRuntimeAPI]:
    api = FakeRuntimeAPI(config.admin_socket, "/var/lib/bluegreen/active.map")
    yield api
    api.close()


def test_a_manual_switch_goes_to_the_idle_colour_and_is_recorded(
    config: StackConfig, haproxy: FakeRuntimeAPI
) -> None:
    said = commands.switch(config)
    assert said.startswith("switched blue -> green in ")
    assert haproxy.colour == "green"
    assert read_map_file(config.map_file) == "green"
    assert load_state(config.state_file).live == "green"
    assert load_state(config.state_file).releases == {"blue": "r1"}
    assert DeployLock(config.lock_file).running() is None  # released again


def test_a_manual_switch_waits_for_no_deploy(config: StackConfig, haproxy: FakeRuntimeAPI) -> None:
    deploy = DeployLock(config.lock_file)
    deploy.acquire("20261202T000000Z-abcdef", "2026-12-02T00:00:00Z")
    try:
        with pytest.raises(LockError):
            commands.switch(config, "green")
    finally:
        deploy.release()
    assert haproxy.colour == "blue"
    assert not any(c.startswith("set map") for c in haproxy.commands)
    assert load_state(config.state_file).live == "blue"


def test_status_says_the_live_colour_and_every_server_without_docker(
    config: StackConfig, haproxy: FakeRuntimeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    haproxy.status["web_green"] = "DOWN"
    lines = commands.status(config).splitlines()
    assert lines[0] == "live colour: blue (HAProxy runtime API)"
    servers = [line for line in lines if line.startswith("  server ")]
    assert servers == [
        "  server api_blue/backend-blue: UP",
        "  server web_blue/frontend-blue: UP",
        "  server api_green/backend-green: UP",
        "  server web_green/frontend-green: DOWN",
    ]
    assert "  blue release: r1" in lines
    assert lines[-1] == "deploy running: no"


def test_a_manual_rollback_is_recorded_logged_and_published_as_a_deploys_even_unverified(
    config: StackConfig, haproxy: FakeRuntimeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Green still runs (hot): traffic moves without Docker; nothing answers on the public URL,
    so green is not proven to serve, and blue does not either: users stay on green, said so."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    save_state(config.state_file, ColourState(live="blue", releases={"blue": "r1", "green": "r0"}))
    with pytest.raises(DeployError, match="rolled back to green, but it does not serve"):
        commands.rollback(config, progress=lambda message: None)
    assert haproxy.colour == "green"
    record = RecordStore(config.state_dir).last()
    assert record is not None
    assert (record.result, record.release, record.from_colour, record.to_colour) == (
        "rolled_back",
        "r0",
        "blue",
        "green",
    )
    assert record.rollback_s is not None
    assert "blue does not serve either; users stay on green" in (record.error or "")
    state = load_state(config.state_file)
    assert (state.live, state.last_deploy) == ("green", record.id)
    events = [json.loads(line) for line in config.log_file.read_text().splitlines()]
    assert [e["event"] for e in events] == ["rollback", "deploy.end"]
    assert {e["deploy_id"] for e in events} == {record.id}
    assert events[0]["level"] == "error"
    assert "bluegreen_rollback_seconds" in config.metrics_path.read_text()
    assert DeployLock(config.lock_file).running() is None
