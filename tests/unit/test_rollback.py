"""The rollback's decisions: when a colour is started again before traffic goes back to it.

A hot rollback (the old colour still runs) must reach nothing but the router before ``set map``;
a retired colour is started first; a colour the router does not see UP is started, then switched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.errors import LiveColourChanged
from pytest_bluegreen.core.ports import NoObserver
from pytest_bluegreen.core.rollback import switch_back
from tests.unit.test_deployment import BEFORE_SWITCH, FakeRouter, make_world


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
