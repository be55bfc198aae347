"""The Swarm adapter's own decisions: what a stack deploy is given, and what a replica slot is.

The adapter against a real multi-node swarm is tested in tests/swarm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.adapters.engines.swarm import for_stack_deploy, slot_state
from pytest_bluegreen.core.config import load_config
from pytest_bluegreen.core.errors import ConfigError

RESOLVED: dict[str, Any] = {
    "version": "3.8",
    "services": {
        "db": {"image": "reg/db:1", "build": {"context": "/x/db"}},
        "api-blue": {"image": "reg/api:r1", "build": {"context": "/x/app"}, "deploy": {}},
        "api-green": {
            "image": "reg/api:r2",
            "build": {"context": "/x/app"},
            "deploy": {"replicas": 2, "resources": {"limits": {"cpus": 0.5, "memory": "64M"}}},
        },
    },
    "networks": {"shop": {"driver": "overlay", "attachable": True}},
    "secrets": {"site_pem": {"file": "/x/.bluegreen/tls/site.pem"}},
}


def test_a_stack_deploy_is_given_only_the_services_named_without_their_build() -> None:
    doc = for_stack_deploy(RESOLVED, ["api-green"])

    assert doc["services"] == {
        "api-green": {
            "image": "reg/api:r2",
            # Compose resolves cpus to a number; the stack loader wants a string.
            "deploy": {"replicas": 2, "resources": {"limits": {"cpus": "0.5", "memory": "64M"}}},
        }
    }
    assert doc["networks"] == RESOLVED["networks"]  # what the services use stays declared
    assert doc["secrets"] == RESOLVED["secrets"]
    assert "api-blue" in RESOLVED["services"]  # the resolved file itself is left as it was


def test_a_service_the_stack_file_lacks_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="the stack file has no service web-green"):
        for_stack_deploy(RESOLVED, ["web-green"])


def task(index: int, state: str, desired: str = "running", exit_code: int = 0) -> dict[str, Any]:
    return {
        "ID": f"t{index}",
        "Version": {"Index": index},
        "Slot": 1,
        "DesiredState": desired,
        "Status": {"State": state, "ContainerStatus": {"ExitCode": exit_code}},
    }


def test_a_slot_is_its_current_task() -> None:
    state = slot_state("api-green.1", [task(1, "running")])

    assert (state.status, state.ready, state.failed, state.restarts) == ("running", True, False, 0)


def test_a_task_moved_off_a_lost_node_is_no_restart_but_is_not_ready_until_it_runs() -> None:
    lost = task(1, "running", desired="shutdown")  # the node went down with it
    moving = slot_state("api-green.1", [lost, task(2, "preparing")])
    moved = slot_state("api-green.1", [lost, task(2, "running")])

    assert (moving.ready, moving.failed, moving.restarts) == (False, False, 0)
    assert (moved.ready, moved.restarts) == (True, 0)


def test_a_failed_task_replaced_by_swarm_counts_as_a_restart() -> None:
    failed = task(1, "failed", desired="shutdown", exit_code=3)
    state = slot_state("api-green.1", [failed, task(2, "running")])

    assert (state.ready, state.restarts) == (True, 1)


def test_a_slot_whose_task_failed_is_failed_with_its_exit_code() -> None:
    state = slot_state("api-green.1", [task(1, "failed", exit_code=3)])

    assert (state.failed, state.exit_code) == (True, 3)


def test_engine_is_compose_or_swarm(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.blue-green.yml").write_text("services: {}\n")
    (tmp_path / "bluegreen.toml").write_text('engine = "swarm"\npreview_host = "10.0.0.5"\n')
    config = load_config(tmp_path, environ={})
    assert config.engine.name == "swarm"
    assert config.preview_url("green") == "https://10.0.0.5:8442"
    assert config.port("ADMIN_PORT") == 9999

    (tmp_path / "bluegreen.toml").write_text('engine = "kubernetes"\n')
    with pytest.raises(ConfigError, match=r"bluegreen\.engine must be one of compose, swarm"):
        load_config(tmp_path, environ={})
