"""The deployment's decisions, with fakes for every port: no Docker, no HAProxy, no database.

Each test drives :class:`Deployment` through its stages as the stage items do and checks what
it decided: which colour users end on, what it stopped, what it recorded and told.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.core.colours import Colour, other_colour
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.deployment import Deployment, Phase
from pytest_bluegreen.core.errors import DeployError, LiveColourChanged, LockError, NotReadyError
from pytest_bluegreen.core.load_figures import Sample
from pytest_bluegreen.core.lock import DeployLock, LockHolder
from pytest_bluegreen.core.ports import (
    BackupResult,
    ContainerState,
    DrainResult,
    NotificationKind,
    Preflight,
    Rehearsal,
    ServerState,
    SwitchResult,
)
from pytest_bluegreen.core.record import DeployRecord, Mask, RecordStore, StageRecord
from pytest_bluegreen.core.state import ColourState, load_state, save_state
from tests.unit.reference import stack_config

SECRET = "s3cret-value-of-the-stack"


class FakeRouter:
    def __init__(self, live: Colour) -> None:
        self.live = live
        self.switches: list[Colour] = []
        self.down: set[Colour] = set()  # colours whose servers are not UP
        self.drained: list[Colour] = []
        self.open_at_deadline = 0  # sessions the drain had to close
        self.releases: list[tuple[dict[Colour, str], bool]] = []  # as published, running or not

    def active_colour(self) -> Colour:
        return self.live

    def servers(self, colour: Colour) -> list[ServerState]:
        status = "DOWN" if colour in self.down else "UP"
        return [ServerState(f"api_{colour}", f"backend-{colour}", status, 0, 0)]

    def not_ready(self, colour: Colour) -> list[ServerState]:
        return [s for s in self.servers(colour) if not s.up]

    def wait_ready(self, colour: Colour, timeout_s: float) -> None:
        if colour in self.down:
            raise DeployError(f"{colour} is not UP")

    def drain(self, colour: Colour, timeout_s: float) -> DrainResult:
        self.drained.append(colour)
        return DrainResult(timeout_s if self.open_at_deadline else 0.01, self.open_at_deadline)

    def publish_releases(self, releases: Mapping[Colour, str], *, running: bool) -> None:
        self.releases.append((dict(releases), running))

    def preflight(self, to_colour: Colour, *, expect_from: Colour | None = None) -> Preflight:
        if expect_from is not None and self.live != expect_from:
            raise LiveColourChanged(self.live, expect_from)
        if to_colour in self.down:
            raise NotReadyError(f"{to_colour} is not UP")
        return Preflight(self.live, to_colour, 0.0, 1.0)

    def switch_now(self, to_colour: Colour, *, expect_from: Colour | None = None) -> SwitchResult:
        return self.switch(to_colour, expect_from=expect_from)

    def switch(
        self,
        to_colour: Colour,
        *,
        expect_from: Colour | None = None,
        preflight: Preflight | None = None,
    ) -> SwitchResult:
        self.preflight(to_colour, expect_from=expect_from)
        result = SwitchResult(self.live, to_colour, 1.0, 0.5, 1.0, 1.0)
        self.live = to_colour
        self.switches.append(to_colour)
        return result


class FakeStack:
    def __init__(self) -> None:
        self.release_env: dict[str, str] = {}
        self.running: set[str] = {"db", "loadbalancer", "backend-blue", "frontend-blue"}
        self.stopped: list[str] = []
        self.built: list[str] = []
        self.recreated: list[str] = []
        self.revived: list[Colour] = []
        self.retire_scheduled: list[tuple[Colour, float]] = []
        self.restarts: dict[str, int] = {}
        self.crashing: str | None = None  # restarts at every look after the first
        self.unhealthy: set[str] = set()
        self.migrated: list[tuple[Colour, bool]] = []
        self.pruned_keeping: tuple[int, list[str]] | None = None
        self.extra_shared: list[str] = []  # services both colours use besides db and lb
        self.started: list[str] = []

    def prepare(self) -> None:
        return None

    def read_services(self) -> list[str]:
        return ["db", "backend-blue", "frontend-blue", "backend-green", "frontend-green"]

    def check_ports_free(self) -> None:
        return None

    def shared_services(self) -> list[str]:
        return ["db", "loadbalancer", *self.extra_shared]

    def build_missing_shared(self) -> list[str]:
        return []

    def running_services(self, services: Iterable[str]) -> list[str]:
        return [s for s in services if s in self.running]

    def placement(self, services: Iterable[str]) -> dict[str, list[str]]:
        return {s: ["node-a"] for s in services if s in self.running}

    def start(self, services: Sequence[str]) -> None:
        self.started += services
        self.running.update(services)

    def stop(self, services: Sequence[str]) -> None:
        self.stopped += services
        self.running.difference_update(services)

    def build(self, services: Sequence[str]) -> None:
        self.built += services

    def recreate(self, services: Sequence[str]) -> None:
        self.recreated += services
        self.running.update(services)

    def wait_healthy(self, services: Sequence[str], timeout_s: float) -> None:
        return None

    def migrate(self, colour: Colour, *, seed: bool) -> None:
        self.migrated.append((colour, seed))

    def start_router(self, colour: Colour) -> None:
        self.running.add("loadbalancer")

    def revive(self, colour: Colour) -> None:
        self.revived.append(colour)
        self.running.update({f"backend-{colour}", f"frontend-{colour}"})

    def container_ids(self, service: str) -> list[str]:
        return [f"{service}-1"]

    def container_state(self, container_id: str) -> ContainerState:
        service = container_id.removesuffix("-1")
        if service == self.crashing:
            self.restarts[service] = self.restarts.get(service, -1) + 1
        health = "unhealthy" if service in self.unhealthy else "healthy"
        return ContainerState(
            container_id, service, "running", health, 0, self.restarts.get(service, 0)
        )

    def logs(self, container_id: str, tail: int) -> str:
        return f"last lines of {container_id}, password {SECRET}"

    def prune_release_images(self, keep: int, protect: Iterable[str]) -> list[str]:
        self.pruned_keeping = (keep, sorted(protect))
        return []

    def schedule_retire(self, colour: Colour, delay_s: float) -> None:
        self.retire_scheduled.append((colour, delay_s))


class FakeDatabase:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.backups: list[str] = []

    def backup(self, name: str) -> BackupResult:
        self.backups.append(name)
        path = self.folder / f"{name}.dump"
        path.write_bytes(b"dump")
        return BackupResult(path, "ab" * 32, 4, {"aptos_builder": 3}, 0.1, 0.2)


class FakeLoad:
    """Users' requests: ``fail_after_switch`` of them fail once the switch happened."""

    def __init__(self, router: FakeRouter, fail_after_switch: int = 0) -> None:
        self.router = router
        self.fail_after_switch = fail_after_switch
        self.launched = self.released = self.stopped = False
        self.switched_at: float | None = None

    def launch(self) -> None:
        self.launched = True

    def release(self) -> None:
        assert self.launched, "released before it was launched"
        self.released = True

    def samples(self) -> list[Sample]:
        now = time.time()
        old = "blue"
        samples = [Sample(now - 3 + i * 0.1, 5.0, True, old) for i in range(10)]
        if self.router.switches:
            samples += [Sample(now + i * 0.01, 5.0, True, "green") for i in range(10)]
            samples += [Sample(now + 0.2, 5.0, False, None)] * self.fail_after_switch
        return samples

    def stop(self) -> None:
        self.stopped = True


class FakeAdapters:
    def __init__(self, folder: Path, live: Colour | None) -> None:
        self._router = FakeRouter(live or "blue")
        self.stack = FakeStack()
        if live is None:
            self.stack.running = set()
        self.db = FakeDatabase(folder)
        self.not_serving: dict[Colour, list[str]] = {}
        self.load_run: FakeLoad | None = None

    @property
    def router(self) -> FakeRouter:
        return self._router

    def open_stack(self) -> FakeStack:
        return self.stack

    def database(self) -> FakeDatabase:
        return self.db

    def rehearsal(self, dump: Path, new: Colour, live: Colour | None) -> Rehearsal:
        raise NotImplementedError

    def load(self, max_seconds: float) -> FakeLoad:
        assert self.load_run is not None, "a deploy with no users started a load"
        return self.load_run

    def colour_serves(self, colour: Colour) -> list[str]:
        return self.not_serving.get(colour, [])


class FakeOutputs:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.notified: list[NotificationKind] = []
        self.metrics: list[str] = []
        self.closed = False

    @property
    def secrets(self) -> tuple[str, ...]:
        return (SECRET,)

    def refresh_secrets(self) -> None:
        return None

    def mask(self, text: str) -> str:
        return text.replace(SECRET, "***")

    def mask_json(self, value: Any) -> Any:
        return json.loads(self.mask(json.dumps(value)))

    def emit(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **fields})

    def notify(self, kind: NotificationKind, record: DeployRecord) -> list[str]:
        self.notified.append(kind)
        return []

    def publish_metrics(self, record: DeployRecord) -> list[str]:
        self.metrics.append(record.result)
        return []

    def close(self) -> None:
        self.closed = True


class Observer:
    def __init__(self) -> None:
        self.moves: list[tuple[Colour, Colour, str]] = []

    def traffic_switched(self, from_colour: Colour, to_colour: Colour, reason: str) -> None:
        self.moves.append((from_colour, to_colour, reason))


@dataclasses.dataclass
class World:
    config: StackConfig
    adapters: FakeAdapters
    outputs: FakeOutputs
    observer: Observer
    deployment: Deployment

    @property
    def stack(self) -> FakeStack:
        return self.adapters.stack

    @property
    def router(self) -> FakeRouter:
        return self.adapters.router

    def run(self, *stages: str, gates_passed: int = 1) -> None:
        for stage in stages:
            if stage == "switch":
                self.deployment.switch(gates_passed)
            else:
                getattr(self.deployment, stage)()

    def state(self) -> ColourState:
        return load_state(self.config.state_file)


WORLDS: list[World] = []


@pytest.fixture(autouse=True)
def _release_locks() -> Iterator[None]:
    """A test that stops mid-deploy leaves its lock held: released here, as an exit would."""
    yield
    while WORLDS:
        lock = WORLDS.pop().deployment.lock
        if lock.held:
            lock.release()


def make_world(tmp_path: Path, live: Colour | None = "blue", **settings: Any) -> World:
    settings = {"load": {"users": 0}, "gates": {"bake_s": 0.0}, **settings}
    config = stack_config(tmp_path, state_dir=tmp_path / "state", **settings)
    if live is not None:
        save_state(config.state_file, ColourState(live=live, releases={live: "r1"}))
    adapters, outputs, observer = FakeAdapters(tmp_path, live), FakeOutputs(), Observer()
    deployment = Deployment(
        config, "r2", adapters, outputs, deploy_id="20261202T000000Z-test01", observer=observer
    )
    WORLDS.append(World(config, adapters, outputs, observer, deployment))
    return WORLDS[-1]


BEFORE_SWITCH = ("prerequisites", "colours", "backup", "build", "bring_up")


def test_a_deploy_that_passes_every_stage_makes_the_new_colour_live(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.run(*BEFORE_SWITCH, "switch", "bake", "retire")
    world.deployment.conclude(None, None, None)
    assert world.router.live == "green"
    assert world.state().live == "green"
    assert world.state().releases == {"blue": "r1", "green": "r2"}
    assert world.stack.stopped == ["backend-blue", "frontend-blue"]  # retired
    assert world.observer.moves == [("blue", "green", "switch")]
    assert world.deployment.record.result == "deployed"
    assert world.outputs.notified == ["start", "success"]
    assert world.outputs.closed
    assert DeployLock(world.config.lock_file).running() is None
    placement = world.deployment.record.placement or {}
    assert placement["backend-green"] == ["node-a"]  # the record says where it ran
    assert "backend-blue" not in placement  # retired: it runs nowhere


def test_a_shared_service_that_is_not_running_is_started_and_a_running_one_left_alone(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path)
    world.stack.extra_shared = ["cache", "queue"]
    world.stack.running.add("queue")
    world.run("prerequisites")
    assert world.stack.started == ["cache"]
    assert any(e["event"] == "prerequisites.started" for e in world.outputs.events)
    world.run("colours", "backup", "build", "bring_up", "switch", "bake", "retire")
    world.deployment.conclude(None, None, None)
    assert world.stack.started == ["cache"]  # nothing shared started, stopped or restarted again
    assert not {"cache", "queue", "db", "loadbalancer"} & set(world.stack.stopped)


def test_old_release_images_are_pruned_keeping_the_live_and_previous_ones(tmp_path: Path) -> None:
    world = make_world(tmp_path, engine={"keep_releases": 2})
    world.run(*BEFORE_SWITCH, "switch", "bake", "retire")
    world.deployment.conclude(None, None, None)
    assert world.stack.pruned_keeping == (2, ["r1", "r2"])


def test_a_deploy_that_never_read_the_stack_prunes_nothing(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.deployment.conclude("prerequisites", "stage prerequisites failed: no Docker", None)
    assert world.deployment.record.result == "aborted"
    assert world.stack.pruned_keeping is None


def test_a_failure_before_anything_changed_touches_nothing(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.run("prerequisites", "colours")
    world.deployment.conclude("backup", "stage backup failed: disk full", 1.0)
    assert world.deployment.record.result == "aborted"
    assert world.router.switches == []
    assert world.stack.stopped == []
    assert world.state().live == "blue"
    assert world.outputs.notified == ["start", "failure"]


def test_a_failure_before_the_switch_stops_the_idle_colour_and_leaves_traffic(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path)
    world.run(*BEFORE_SWITCH)
    world.deployment.conclude("gates", "stage gates failed: /api: HTTP 500", 1.0)
    assert world.deployment.record.result == "aborted"
    assert world.router.switches == []
    assert world.router.live == "blue"
    assert world.stack.stopped == ["backend-green", "frontend-green"]
    assert world.state().releases == {"blue": "r1"}  # the aborted release is forgotten
    logs = world.deployment.record.logs
    assert logs is not None
    assert set(logs) == {"backend-green", "frontend-green"}
    assert SECRET not in json.dumps(logs)
    assert "***" in logs["backend-green"]


def test_no_gate_that_ran_means_no_switch(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.run(*BEFORE_SWITCH)
    with pytest.raises(DeployError, match="no gate test ran"):
        world.deployment.switch(gates_passed=0)
    assert world.router.switches == []
    world.deployment.conclude("switch", "no gate test ran", 1.0)
    assert world.deployment.record.result == "aborted"


def test_a_failure_after_the_switch_rolls_back_and_verifies_the_old_colour(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path)
    world.run(*BEFORE_SWITCH, "switch")
    assert world.deployment.phase is Phase.SWITCHED
    world.deployment.conclude("verify", "stage verify failed", world.deployment.clock())
    assert world.router.live == "blue"
    assert world.router.switches == ["green", "blue"]
    assert world.stack.revived == []  # blue still ran: no Docker before traffic went back
    assert world.stack.stopped == ["backend-green", "frontend-green"]  # the failed colour
    record = world.deployment.record
    assert record.result == "rolled_back"
    assert record.rollback_s is not None
    assert record.rollback_verified_s is not None
    assert record.rollback_s <= record.rollback_verified_s
    assert world.state().live == "blue"
    assert world.state().releases == {"blue": "r1"}  # the failed release is no rollback target
    assert world.observer.moves[-1] == ("green", "blue", "rollback")
    assert world.outputs.notified[-1] == "rollback"


def test_a_rollback_whose_old_colour_does_not_serve_goes_back_to_the_one_that_does(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path)
    world.run(*BEFORE_SWITCH, "switch")
    world.adapters.not_serving["blue"] = ["/: HTTP 502"]
    with pytest.raises(DeployError, match=r"does not serve: /: HTTP 502; green kept live"):
        world.deployment.conclude("bake", "stage bake failed", world.deployment.clock())
    assert world.router.live == "green"
    assert world.state().live == "green"
    assert world.deployment.record.result == "rolled_back"
    assert "green kept live" in (world.deployment.record.error or "")
    assert DeployLock(world.config.lock_file).running() is None  # unlocked all the same


def test_a_rollback_with_neither_colour_serving_stays_on_the_old_one(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.run(*BEFORE_SWITCH, "switch")
    world.adapters.not_serving = {"blue": ["/: HTTP 502"], "green": ["/: HTTP 500"]}
    with pytest.raises(DeployError, match="green does not serve either; users stay on blue"):
        world.deployment.conclude("bake", "stage bake failed", world.deployment.clock())
    assert world.router.live == "blue"


def test_a_first_deploy_that_fails_after_its_switch_has_nothing_to_roll_back_to(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, live=None)
    world.run(*BEFORE_SWITCH, "switch")
    assert world.stack.migrated == [("blue", True)]  # a first deploy seeds
    with pytest.raises(DeployError, match="no colour to roll back to"):
        world.deployment.conclude("verify", "stage verify failed", 1.0)
    assert world.deployment.record.result == "rolled_back"


def test_a_first_deploy_starts_the_router_on_its_colour_without_a_switch(tmp_path: Path) -> None:
    world = make_world(tmp_path, live=None)
    world.run(*BEFORE_SWITCH, "switch", "bake", "retire")
    world.deployment.conclude(None, None, None)
    assert "loadbalancer" in world.stack.running
    assert world.router.switches == []
    assert world.state().live == "blue"
    assert world.deployment.record.from_colour is None


def test_failed_requests_after_the_switch_fail_the_switch_stage(tmp_path: Path) -> None:
    world = make_world(tmp_path, load={"window_s": 0.0, "users": 1})
    world.adapters.load_run = FakeLoad(world.router, fail_after_switch=3)
    world.run(*BEFORE_SWITCH)
    with pytest.raises(DeployError, match=r"under load: 3 requests failed \(budget 0\)"):
        world.deployment.switch(gates_passed=1)
    assert world.deployment.switched  # traffic moved: the end is a rollback, not an abort
    world.deployment.conclude("switch", "under load", world.deployment.clock())
    assert world.router.live == "blue"
    assert world.adapters.load_run.stopped


def test_a_switch_under_load_records_what_users_saw_until_the_end(tmp_path: Path) -> None:
    world = make_world(tmp_path, load={"window_s": 0.0, "users": 1})
    world.adapters.load_run = FakeLoad(world.router)
    world.run(*BEFORE_SWITCH, "switch", "bake", "retire")
    world.deployment.conclude(None, None, None)
    assert world.adapters.load_run.released
    assert world.adapters.load_run.stopped
    load = world.deployment.record.load
    assert load is not None
    assert load["total"]["requests"] == 20
    assert load["total"]["failures"] == 0
    assert load["old_colour_after_switch"] == 0
    assert any(e["event"] == "load.final" for e in world.outputs.events)


def test_the_load_is_launched_by_bring_up_and_released_only_by_the_switch(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, load={"window_s": 0.0, "users": 1})
    load = world.adapters.load_run = FakeLoad(world.router)
    world.run(*BEFORE_SWITCH)
    assert load.launched  # its start-up overlaps the gates
    assert not load.released  # the gates see no load
    world.run("switch")
    assert load.released


def test_a_load_launched_for_a_deploy_that_fails_at_the_gates_is_stopped_unused(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, load={"users": 1})
    load = world.adapters.load_run = FakeLoad(world.router)
    world.run(*BEFORE_SWITCH)
    world.deployment.conclude("gates", "stage gates failed: /api: HTTP 500", 1.0)
    assert world.deployment.record.result == "aborted"
    assert load.stopped
    assert not load.released
    assert world.deployment.record.load is None


def test_a_first_deploy_launches_no_load(tmp_path: Path) -> None:
    world = make_world(tmp_path, live=None, load={"users": 1})  # no FakeLoad: launching one fails
    world.run(*BEFORE_SWITCH, "switch")
    world.deployment.conclude(None, None, None)
    assert world.deployment.record.result == "deployed"


class FakeRehearsal:
    scratch = "scratch-db"

    def __init__(self) -> None:
        self.dropped = threading.Event()

    def prepare(self) -> None:
        return None

    def summary(self) -> dict[str, object]:
        return {"applied": ["0002"]}

    def drop(self) -> None:
        time.sleep(0.05)  # Docker removing containers: bring_up goes on meanwhile
        self.dropped.set()


def test_the_rehearsal_is_gone_when_bring_up_ends_and_its_summary_recorded(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path)
    rehearsal = FakeRehearsal()
    world.adapters.rehearsal = lambda dump, new, live: rehearsal  # type: ignore[method-assign]
    world.run("prerequisites", "colours", "backup", "build")
    assert world.deployment.rehearsal() is rehearsal
    world.run("bring_up")
    assert rehearsal.dropped.is_set()
    assert world.deployment.record.migration == {"applied": ["0002"]}


def test_a_rehearsal_dropped_aside_is_waited_for_when_bring_up_fails(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    rehearsal = FakeRehearsal()
    world.adapters.rehearsal = lambda dump, new, live: rehearsal  # type: ignore[method-assign]
    world.run("prerequisites", "colours", "backup", "build")
    world.deployment.rehearsal()
    world.router.down.add("green")
    with pytest.raises(DeployError, match="green is not UP"):
        world.run("bring_up")
    world.deployment.conclude("bring_up", "green is not UP", 1.0)
    assert rehearsal.dropped.is_set()
    assert world.deployment.record.result == "aborted"


def test_a_stage_is_saved_when_its_outcome_changes_and_its_passing_counts_once_a_second(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path)
    world.run("prerequisites")
    deployment, now = world.deployment, [100.0]
    saved: list[StageRecord] = []
    deployment.clock = lambda: now[0]
    save = deployment.records.save

    def counted_save(record: DeployRecord, mask: Mask | None = None) -> Path:
        saved.append(record.stages[-1])
        return save(record, mask)

    deployment.records.save = counted_save  # type: ignore[method-assign]
    deployment.stage_done("gates", "skipped", 0.0)  # a new stage: saved
    deployment.stage_done("gates", "passed", 0.1, "1 passed")  # its outcome changed: saved
    for count in range(2, 10):  # passing tests within the second: the event log only
        deployment.stage_done("gates", "passed", count / 10, f"{count} passed")
    now[0] += 1.0
    deployment.stage_done("gates", "passed", 1.0, "10 passed")  # a second later: saved
    deployment.stage_done("gates", "failed", 1.1, "/api: HTTP 500")  # saved at once
    assert [(s.outcome, s.message) for s in saved] == [
        ("skipped", ""),
        ("passed", "1 passed"),
        ("passed", "10 passed"),
        ("failed", "/api: HTTP 500"),
    ]
    assert len([e for e in world.outputs.events if e["event"] == "stage"]) == 12


def test_bake_rolls_back_on_a_restarted_container(tmp_path: Path) -> None:
    world = make_world(tmp_path, gates={"bake_s": 5.0})
    world.run(*BEFORE_SWITCH, "switch")
    world.stack.crashing = "backend-green"
    with pytest.raises(DeployError, match="green failed while baking: backend-green restarted"):
        world.deployment.bake()


def test_bake_rolls_back_on_a_server_the_router_no_longer_sees_up(tmp_path: Path) -> None:
    world = make_world(tmp_path, gates={"bake_s": 5.0})
    world.run(*BEFORE_SWITCH, "switch")
    world.router.down.add("green")
    with pytest.raises(DeployError, match="api_green/backend-green is DOWN"):
        world.deployment.bake()


def test_long_lived_sessions_at_the_drain_deadline_are_closed_and_the_deploy_stands(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, retire={"drain_timeout_s": 2.0})
    world.router.open_at_deadline = 3
    world.run(*BEFORE_SWITCH, "switch", "bake", "retire")
    world.deployment.conclude(None, None, None)
    assert world.deployment.record.result == "deployed"
    assert world.router.live == "green"
    assert world.stack.stopped == ["backend-blue", "frontend-blue"]
    (closed,) = [e for e in world.outputs.events if e["event"] == "retire.sessions_closed"]
    assert closed["closed_sessions"] == 3
    assert "3 open sessions after retire.drain_timeout_s (2s)" in closed["message"]


def test_retire_with_a_delay_leaves_the_old_colour_running_for_a_detached_stop(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, retire={"delay_s": 30.0})
    world.run(*BEFORE_SWITCH, "switch", "bake", "retire")
    assert world.router.drained == ["blue"]
    assert world.stack.stopped == []
    assert world.stack.retire_scheduled == [("blue", 30.0)]


def test_the_colours_stage_trusts_the_router_over_the_state_file(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.router.live = "green"
    save_state(world.config.state_file, ColourState(live="green", releases={"green": "r1"}))
    world.run("prerequisites")
    save_state(world.config.state_file, ColourState(live="blue"))
    world.deployment.state.live = "blue"
    world.run("colours")
    assert world.deployment.record.from_colour == "green"
    assert world.deployment.to_colour == other_colour("green")
    assert any(e["event"] == "colours.mismatch" for e in world.outputs.events)


def test_a_killed_deploys_unverified_switch_is_put_back_and_its_record_closed(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path)
    killed = DeployRecord(id="20261201T000000Z-killed", release="r9", from_colour="blue",
                          to_colour="green")  # fmt: skip
    RecordStore(world.config.state_dir).save(killed)
    world.router.live = "green"  # switched, then killed before it was verified
    world.config.state_dir.mkdir(parents=True, exist_ok=True)
    holder = LockHolder(killed.id, 999_999_999, killed.started_at)
    world.config.lock_file.write_text(json.dumps(dataclasses.asdict(holder)))
    world.run("prerequisites")
    assert world.router.active_colour() == "blue"  # not .live: mypy keeps it narrowed to "green"
    assert world.observer.moves == [("green", "blue", "repair")]
    repaired = RecordStore(world.config.state_dir).load(killed.id)
    assert repaired.result == "interrupted"
    assert world.deployment.id in (repaired.error or "")


def test_a_second_deploy_is_refused_while_one_runs(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.run("prerequisites")
    other = make_world(tmp_path)
    with pytest.raises(LockError):
        other.deployment.prerequisites()
    assert world.router.switches == []


def test_the_record_as_saved_masks_the_stacks_secrets(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.run(*BEFORE_SWITCH)
    world.deployment.conclude("gates", f"stage gates failed: saw {SECRET}", 1.0)
    saved = (world.config.state_dir / "last-deploy.json").read_text()
    assert SECRET not in saved
    assert "***" in saved


def test_a_stack_without_a_database_or_migrations_deploys_without_touching_one(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, database={"kind": "none"}, migrations={"command": ()})
    world.run("prerequisites", "colours", "build", "bring_up", "switch", "bake", "retire")
    world.deployment.conclude(None, None, None)
    assert world.deployment.record.result == "deployed"
    assert world.stack.migrated == []
    assert world.deployment.record.backup is None
    assert "db" not in world.stack.started


def test_workers_start_after_the_switch_and_stop_with_their_colour(tmp_path: Path) -> None:
    world = make_world(tmp_path, services={"workers": ("worker-{colour}",)})
    world.stack.running.add("worker-blue")
    world.run(*BEFORE_SWITCH)
    assert world.stack.built == ["backend-green", "frontend-green", "worker-green"]
    assert "worker-green" not in world.stack.recreated  # no jobs before the gates passed
    assert world.router.releases[-1] == ({"blue": "r1", "green": "r2"}, True)
    world.run("switch")
    assert world.stack.recreated[-1:] == ["worker-green"]
    world.run("bake", "retire")
    world.deployment.conclude(None, None, None)
    assert world.stack.stopped == ["backend-blue", "frontend-blue", "worker-blue"]


def test_workers_may_start_with_their_colour_and_an_abort_stops_them(tmp_path: Path) -> None:
    world = make_world(
        tmp_path, services={"workers": ("worker-{colour}",), "workers_start": "with_colour"}
    )
    world.run(*BEFORE_SWITCH)
    assert "worker-green" in world.stack.recreated
    world.deployment.conclude("gates", "stage gates failed: smoke", 1.0)
    assert world.deployment.record.result == "aborted"
    assert world.stack.stopped == ["backend-green", "frontend-green", "worker-green"]


def test_a_rollback_stops_the_failed_colours_workers(tmp_path: Path) -> None:
    world = make_world(tmp_path, services={"workers": ("worker-{colour}",)})
    world.run(*BEFORE_SWITCH, "switch")
    world.deployment.conclude("verify", "stage verify failed: 500", 1.0)
    assert world.deployment.record.result == "rolled_back"
    assert "worker-green" in world.stack.stopped
    assert "worker-blue" not in world.stack.stopped


def test_an_aborted_release_replaces_the_idle_colours_old_one_as_a_rollback_target(
    tmp_path: Path,
) -> None:
    """The idle colour's containers were recreated with the aborted release: a rollback to
    that colour would start it, so the colour is recorded as having no release to go back to."""
    world = make_world(tmp_path, live="green")
    save_state(
        world.config.state_file, ColourState(live="green", releases={"blue": "r0", "green": "r1"})
    )
    world.run(*BEFORE_SWITCH)
    world.deployment.conclude("gates", "stage gates failed: /health: HTTP 500", 1.0)
    assert world.deployment.record.result == "aborted"
    assert world.state().releases == {"green": "r1"}
    assert world.state().live == "green"
