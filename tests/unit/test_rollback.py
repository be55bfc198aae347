"""The rollback's decisions: when a colour is started again before traffic goes back to it, and
what the one rollback writes, called by a deploy or by hand.

A hot rollback (the old colour still runs) must reach nothing but the router before ``set map``;
a retired colour is started first; a colour the router does not see UP is started, then switched.
Whoever calls it, verified or not, it writes the record, the state, the event log, the metrics
and the notification.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.errors import DeployError, LiveColourChanged, NotReadyError
from pytest_bluegreen.core.lock import DeployLock
from pytest_bluegreen.core.ports import NoObserver
from pytest_bluegreen.core.record import DeployRecord, RecordStore
from pytest_bluegreen.core.rollback import (
    MANUAL_ROLLBACK,
    Rollback,
    RollbackResult,
    switch_back,
)
from pytest_bluegreen.core.state import ColourState, save_state
from tests.unit.test_deployment import (
    BEFORE_SWITCH,
    SECRET,
    FakeOutputs,
    FakeRouter,
    FakeStack,
    World,
    make_world,
)


class Reviver:
    """Records revives; a revived colour comes UP in the router."""

    def __init__(self, router: FakeRouter) -> None:
        self.router = router
        self.revived: list[Colour] = []

    def __call__(self, colour: Colour) -> None:
        self.revived.append(colour)
        self.router.down.discard(colour)


def rollback_to_blue(router: FakeRouter, *, retired: bool, expect_live: bool = False) -> Reviver:
    revive = Reviver(router)
    result = switch_back(
        revive,
        router,
        lambda colour: [],
        "blue",
        "green",
        0.0,
        NoObserver(),
        retired=retired,
        expect_live=expect_live,
        clock=lambda: 1.0,
    )
    assert result.verified
    assert result.live == "blue"
    return revive


def test_a_hot_rollback_switches_without_reviving() -> None:
    router = FakeRouter("green")
    assert rollback_to_blue(router, retired=False).revived == []
    assert router.switches == ["blue"]


def test_a_retired_colour_is_started_before_traffic_goes_to_it() -> None:
    router = FakeRouter("green")
    router.down.add("blue")
    assert rollback_to_blue(router, retired=True).revived == ["blue"]
    assert router.switches == ["blue"]


def test_a_colour_the_router_does_not_see_up_is_started_then_switched() -> None:
    """Stopped by hand, or by a version that did not record it: the switch refuses, then works."""
    router = FakeRouter("green")
    router.down.add("blue")
    assert rollback_to_blue(router, retired=False).revived == ["blue"]
    assert router.switches == ["blue"]


def test_an_expected_live_colour_that_changed_switches_nothing() -> None:
    router = FakeRouter("blue")  # switched back by hand already
    with pytest.raises(LiveColourChanged) as raised:
        rollback_to_blue(router, retired=False, expect_live=True)
    assert raised.value.live == "blue"
    assert router.switches == []


def test_a_deploy_marks_what_it_stops_as_retired_and_a_rollback_revives_it(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path)
    world.run(*BEFORE_SWITCH, "switch", "bake", "retire")
    assert world.state().retired == {"blue"}  # saved before the stop
    world.deployment.conclude("retire", "stage retire failed", world.deployment.clock())
    assert world.stack.revived == ["blue"]
    assert world.router.live == "blue"
    assert world.state().retired == {"green"}  # the failed colour, stopped


# -- the one rollback: the same writes from a deploy and by hand -------------------------------


class RevivingStack(FakeStack):
    """A revived colour comes UP in the router; what the router served at each revive is kept."""

    def __init__(self, router: FakeRouter) -> None:
        super().__init__()
        self.router = router
        self.served_at_revive: list[Colour] = []

    def revive(self, colour: Colour) -> None:
        super().revive(colour)
        self.served_at_revive.append(self.router.live)
        self.router.down.discard(colour)


@dataclass
class Manual:
    """A manual rollback's world: green live, blue the previous colour (release r0)."""

    world: World
    lock: DeployLock
    record: DeployRecord
    opened_outputs_after: list[int]  # how many switches the router had made when opened

    @property
    def outputs(self) -> FakeOutputs:
        return self.world.outputs

    def run(self) -> RollbackResult:
        router = self.world.router

        def outputs() -> FakeOutputs:
            if not self.opened_outputs_after:
                self.opened_outputs_after.append(len(router.switches))
            return self.world.outputs

        rollback = Rollback(
            self.world.config, self.world.adapters, outputs, self.lock, observer=self.world.observer
        )
        return rollback.run(self.record, self.world.state(), router.live, 0.0, MANUAL_ROLLBACK)


@pytest.fixture
def manual(tmp_path: Path) -> Iterator[Manual]:
    world = make_world(tmp_path, live="green", services={"workers": ("worker-{colour}",)})
    world.router.live = "green"
    world.stack.running = {"db", "loadbalancer", "backend-blue", "frontend-blue", "worker-green"}
    save_state(
        world.config.state_file, ColourState(live="green", releases={"blue": "r0", "green": "r1"})
    )
    lock = DeployLock(world.config.lock_file)
    record = DeployRecord(
        id="20261202T000000Z-manual", release="", from_colour=None, to_colour=None
    )
    lock.acquire(record.id, record.started_at, sync=False)
    yield Manual(world, lock, record, [])
    lock.release()


def deploy_rolled_back(tmp_path: Path, *, verified: bool) -> World:
    """A deploy of r2 from blue to green whose verify stage failed after the switch."""
    world = make_world(tmp_path, services={"workers": ("worker-{colour}",)})
    world.run(*BEFORE_SWITCH, "switch")
    if not verified:
        world.adapters.not_serving["blue"] = ["/: HTTP 502"]
    try:
        world.deployment.conclude("verify", "stage verify failed", world.deployment.clock())
    except DeployError:
        assert not verified
    return world


def manual_rolled_back(manual: Manual, *, verified: bool) -> World:
    if not verified:
        manual.world.adapters.not_serving["blue"] = ["/: HTTP 502"]
    try:
        manual.run()
    except DeployError:
        assert not verified
    return manual.world


def rolled_back(
    request: pytest.FixtureRequest, tmp_path: Path, caller: str, *, verified: bool
) -> World:
    if caller == "deploy":
        return deploy_rolled_back(tmp_path, verified=verified)
    manual: Manual = request.getfixturevalue("manual")
    return manual_rolled_back(manual, verified=verified)


def only(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (event,) = [e for e in events if e["event"] == name]
    return event


@pytest.mark.parametrize("caller", ["deploy", "manual"])
@pytest.mark.parametrize("verified", [True, False], ids=["verified", "unverified"])
def test_every_rollback_writes_record_state_event_log_metrics_and_notification(
    request: pytest.FixtureRequest, tmp_path: Path, caller: str, verified: bool
) -> None:
    world = rolled_back(request, tmp_path, caller, verified=verified)
    left: Colour = "green"
    record = RecordStore(world.config.state_dir).last()
    assert record is not None
    assert record.result == "rolled_back"
    assert record.rollback_s is not None
    assert (record.rollback_verified_s is not None) is verified
    assert record.error is None if verified and caller == "manual" else record.error is not None
    if not verified:
        assert "rolled back to blue, but it does not serve: /: HTTP 502; green kept live" in (
            record.error or ""
        )
    state = world.state()
    assert state.live == ("blue" if verified else left)
    assert world.router.live == state.live
    assert state.last_deploy == record.id
    assert world.outputs.metrics[-1] == "rolled_back"
    assert world.outputs.notified[-1] == "rollback"
    assert world.outputs.notified.count("rollback") == 1  # told once, whoever called
    rollback = only(world.outputs.events, "rollback")
    assert (rollback["from_colour"], rollback["to_colour"]) == (left, "blue")
    assert rollback["rollback_s"] == record.rollback_s
    assert rollback["level" if not verified else "live"] == ("error" if not verified else "blue")
    end = world.outputs.events[-1]
    assert (end["event"], end["result"], end["error"]) == (
        "deploy.end",
        "rolled_back",
        record.error,
    )


@pytest.mark.parametrize("caller", ["deploy", "manual"])
def test_an_unverified_rollback_leaves_the_colour_it_left_running_and_a_target(
    request: pytest.FixtureRequest, tmp_path: Path, caller: str
) -> None:
    world = rolled_back(request, tmp_path, caller, verified=False)
    assert world.stack.stopped == []  # users are on it again
    assert "green" in world.state().releases
    assert "green" not in world.state().retired


def test_a_deploys_rollback_stops_the_failed_colour_keeps_its_logs_and_forgets_its_release(
    tmp_path: Path,
) -> None:
    world = deploy_rolled_back(tmp_path, verified=True)
    state = world.state()
    assert state.releases == {"blue": "r1"}
    assert state.retired == {"green"}
    assert world.stack.stopped == ["backend-green", "frontend-green", "worker-green"]
    record = RecordStore(world.config.state_dir).last()
    assert record is not None
    assert (record.id, record.release, record.from_colour, record.to_colour) == (
        world.deployment.id,
        "r2",
        "blue",
        "green",
    )  # the deploy's own record, ended
    assert record.error == "stage verify failed"
    assert set(record.logs or {}) == {"backend-green", "frontend-green", "worker-green"}
    assert SECRET not in str(record.logs)


def test_a_manual_rollback_names_its_move_and_stops_only_the_workers_it_left(
    manual: Manual,
) -> None:
    result = manual.run()
    assert (result.left_colour, result.to_colour, result.live) == ("green", "blue", "blue")
    state = manual.world.state()
    assert state.releases == {"blue": "r0", "green": "r1"}  # green is a rollback target in turn
    assert state.retired == set()
    assert manual.world.stack.stopped == ["worker-green"]  # jobs are the live colour's
    assert manual.world.stack.revived == []
    record = RecordStore(manual.world.config.state_dir).load(manual.record.id)
    assert (record.release, record.from_colour, record.to_colour) == ("r0", "green", "blue")
    assert record.logs is None
    assert manual.world.observer.moves == [("green", "blue", "rollback")]


def test_a_hot_manual_rollback_opens_no_stack_and_no_outputs_before_traffic_moved(
    manual: Manual,
) -> None:
    opened: list[int] = []
    stack, router = manual.world.stack, manual.world.router

    def open_stack() -> FakeStack:
        opened.append(len(router.switches))
        return stack

    manual.world.adapters.open_stack = open_stack  # type: ignore[method-assign]
    manual.run()
    assert router.switches == ["blue"]
    assert opened == [1]  # to stop green's workers, afterwards
    assert manual.opened_outputs_after == [1]


@pytest.mark.parametrize("caller", ["deploy", "manual"])
def test_a_retired_colour_is_revived_before_traffic_goes_back_to_it(
    request: pytest.FixtureRequest, tmp_path: Path, caller: str
) -> None:
    if caller == "deploy":
        world = make_world(tmp_path)
        world.adapters.stack = RevivingStack(world.router)
        world.run(*BEFORE_SWITCH, "switch", "bake", "retire")  # blue retired, then a failure
        world.router.down.add("blue")
        world.deployment.conclude("retire", "stage retire failed", world.deployment.clock())
    else:
        manual: Manual = request.getfixturevalue("manual")
        world = manual.world
        world.adapters.stack = RevivingStack(world.router)
        save_state(
            world.config.state_file,
            ColourState(live="green", releases={"blue": "r0", "green": "r1"}, retired={"blue"}),
        )
        world.router.down.add("blue")
        manual.run()
    stack = world.adapters.stack
    assert isinstance(stack, RevivingStack)
    assert stack.revived == ["blue"]
    assert stack.served_at_revive == ["green"]  # before the switch back
    assert world.router.live == "blue"
    assert "blue" not in world.state().retired
    record = RecordStore(world.config.state_dir).last()
    assert record is not None
    assert record.rollback_verified_s is not None
    assert world.outputs.notified[-1] == "rollback"


def test_a_manual_rollback_after_a_switch_by_hand_rolls_back_from_the_colour_served(
    manual: Manual,
) -> None:
    """The state says green, HAProxy serves blue: the rollback goes from blue, to green."""
    manual.world.router.live = "blue"
    manual.world.stack.running.update({"backend-green", "frontend-green"})
    rollback = Rollback(
        manual.world.config, manual.world.adapters, lambda: manual.world.outputs, manual.lock
    )
    result = rollback.run(manual.record, manual.world.state(), "green", 0.0, MANUAL_ROLLBACK)
    assert (result.left_colour, result.to_colour) == ("blue", "green")
    assert manual.world.router.switches == ["green"]  # the refused switch changed nothing
    state = manual.world.state()
    assert state.live == "green"
    record = RecordStore(manual.world.config.state_dir).load(manual.record.id)
    assert (record.release, record.from_colour, record.to_colour) == ("r1", "blue", "green")
    assert manual.world.stack.stopped == ["worker-blue"]
    assert manual.world.outputs.notified == ["rollback"]


def test_a_manual_rollback_to_a_colour_without_a_release_writes_and_tells_nothing(
    manual: Manual,
) -> None:
    save_state(manual.world.config.state_file, ColourState(live="green", releases={"green": "r1"}))
    with pytest.raises(DeployError, match="blue never ran a release here: nothing to roll back"):
        manual.run()
    assert manual.world.router.switches == []
    assert RecordStore(manual.world.config.state_dir).last() is None
    assert manual.opened_outputs_after == []  # no event, metrics or notification
    assert manual.world.state() == ColourState(live="green", releases={"green": "r1"})


def test_a_deploys_rollback_that_cannot_switch_still_ends_and_tells_its_record(
    tmp_path: Path,
) -> None:
    """The router refuses (blue never comes UP): users stay on green, the deploy's end is told."""
    world = make_world(tmp_path)
    world.run(*BEFORE_SWITCH, "switch")
    world.router.down.add("blue")
    with pytest.raises(NotReadyError, match="blue is not UP"):
        world.deployment.conclude("verify", "stage verify failed", world.deployment.clock())
    assert world.router.live == "green"
    record = RecordStore(world.config.state_dir).last()
    assert record is not None
    assert record.result == "rolled_back"
    assert record.error == "stage verify failed; then: blue is not UP"
    assert record.rollback_s is None
    assert world.outputs.notified[-1] == "rollback"
    assert world.outputs.metrics[-1] == "rolled_back"
    assert DeployLock(world.config.lock_file).running() is None


def test_the_lock_of_a_manual_rollback_is_synced_once_traffic_moved(
    manual: Manual, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    router = manual.world.router
    sync: Callable[[], None] = manual.lock.sync

    def counted_sync() -> None:
        synced.append(len(router.switches))
        sync()

    monkeypatch.setattr(manual.lock, "sync", counted_sync)
    manual.run()
    assert synced == [1]
