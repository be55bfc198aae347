"""The one rollback: a deploy's (a stage failed after the switch) and ``--bg-rollback``'s.

Traffic goes back first and at once; only then is the colour proven to serve. A rollback never
leaves users on a colour that does not serve while the one it left does: it then switches back
and says so, and the caller raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.errors import NotReadyError
from pytest_bluegreen.core.ports import DeployObserver, Router


@dataclass(frozen=True, slots=True)
class RollbackResult:
    """Where traffic ended and how long it took, counted from the moment the caller gives."""

    to_colour: Colour
    left_colour: Colour
    switched_at: float  # epoch seconds of the switch back, to split the load's figures
    back_s: float  # to the router's answer to set map: users' new requests on ``to_colour``
    verified_s: float | None  # to the proof that it serves; None when it does not
    problems: tuple[str, ...]  # why ``to_colour`` does not serve; () when it does
    live: Colour  # the colour users are on at the end

    @property
    def verified(self) -> bool:
        return not self.problems


def roll_back(
    revive: Callable[[Colour], None],
    router: Router,
    colour_serves: Callable[[Colour], list[str]],
    to_colour: Colour,
    left_colour: Colour,
    since: float,
    observer: DeployObserver,
    *,
    retired: bool,
    expect_live: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> RollbackResult:
    """Switch to ``to_colour`` (started again first when it was ``retired``), then prove it serves.

    A colour not retired gets traffic at once: one round trip to the router reads, sets and
    reads back (``switch_now``); when the router does not see it UP, the colour it served is
    set again at once, and it is revived and switched to with a preflight. With
    ``expect_live``, the switch is refused (``LiveColourChanged``) unless the router still
    serves ``left_colour``. When ``to_colour`` does not serve and ``left_colour`` does, traffic
    goes back to ``left_colour``.
    """
    if retired:
        revive(to_colour)
    expect_from = left_colour if expect_live else None
    switched_at = time.time()
    try:
        switch = router.switch_now(to_colour, expect_from=expect_from)
    except NotReadyError:  # the router put the colour it served back at once
        revive(to_colour)
        switched_at = time.time()
        switch = router.switch(to_colour, expect_from=expect_from)
    # To the router's answer to set map: the check and the map file written came after.
    back_s = max(0.0, clock() - since - (switch.verify_ms + switch.persist_ms) / 1000)
    observer.traffic_switched(left_colour, to_colour, "rollback")
    problems = colour_serves(to_colour)
    if not problems:
        return RollbackResult(
            to_colour, left_colour, switched_at, back_s, clock() - since, (), to_colour
        )
    live = to_colour
    if not colour_serves(left_colour):
        router.switch(left_colour)
        observer.traffic_switched(to_colour, left_colour, "rollback failed")
        live = left_colour
    return RollbackResult(to_colour, left_colour, switched_at, back_s, None, tuple(problems), live)


def describe_failure(result: RollbackResult) -> str:
    """One line: which colour did not serve, and where users are now."""
    where = (
        f"{result.live} kept live"
        if result.live != result.to_colour
        else f"{result.left_colour} does not serve either; users stay on {result.to_colour}"
    )
    return f"rolled back to {result.to_colour}, but it does not serve: " + (
        "; ".join(result.problems) + f"; {where}"
    )
