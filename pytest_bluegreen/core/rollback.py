"""The one rollback: a deploy's after a failed stage, ``bluegreen rollback``, ``--bg-rollback``.

Traffic goes back first and at once; only then is the colour proven to serve. A rollback never
leaves users on a colour that does not serve while the one it left does: it then switches back
and says so, and raises. Whoever calls it, it then writes the same things, verified or not: the
record, the state, an event-log line, the metrics and the notification (:class:`Rollback`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from pytest_bluegreen.core.colours import Colour, other_colour
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.ending import failed_logs, tell_end
from pytest_bluegreen.core.errors import DeployError, LiveColourChanged, NotReadyError
from pytest_bluegreen.core.lock import DeployLock
from pytest_bluegreen.core.ports import (
    Adapters,
    DeployObserver,
    NoObserver,
    Outputs,
    Router,
    Stack,
)
from pytest_bluegreen.core.record import DeployRecord, RecordStore
from pytest_bluegreen.core.state import ColourState, save_state


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


def switch_back(
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

    The traffic step of :class:`Rollback`, and all it does before traffic moves.
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


@dataclass(frozen=True, slots=True)
class RollbackPolicy:
    """Where a deploy's rollback and a manual one differ, and nothing else does.

    ``left_failed``: the colour left runs a release that failed (a deploy's rollback). Once the
    rollback is verified, its services and workers stop, their last log lines kept in the
    record, its release is no rollback target any more and it is marked retired. Otherwise (a
    manual rollback) it keeps its release and runs on, a rollback target in turn; only its
    workers stop, as jobs are the live colour's.

    ``standalone``: the rollback is a run of its own (a manual one), with a record of its own
    that names its move and the release it goes back to, which must have run here. Its switch
    goes only from the colour the caller took as live; when the router serves the other one
    (switched by hand, or a deploy killed after its switch), it rolls back from that one. It is
    recorded and told once traffic moved; before that nothing happened, as with a refused
    switch. A deploy's rollback ends the deploy's record, whatever stopped it, and knows which
    colour it switched to.
    """

    left_failed: bool
    standalone: bool


DEPLOY_ROLLBACK: Final = RollbackPolicy(left_failed=True, standalone=False)
MANUAL_ROLLBACK: Final = RollbackPolicy(left_failed=False, standalone=True)


class Rollback:
    """The one rollback of a deploy's failed stage, ``bluegreen rollback`` and ``--bg-rollback``.

    Before traffic moves it reaches nothing but the router (and the stack, only to start a
    retired colour again); the outputs are opened afterwards, through ``outputs``. ``lock`` is
    the caller's, held for the whole run: its holder's line is synced once traffic moved.
    """

    def __init__(
        self,
        config: StackConfig,
        adapters: Adapters,
        outputs: Callable[[], Outputs],
        lock: DeployLock,
        *,
        observer: DeployObserver | None = None,
        progress: Callable[[str], None] = lambda message: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.adapters = adapters
        self.outputs = outputs
        self.lock = lock
        self.observer: DeployObserver = observer or NoObserver()
        self.progress = progress
        self.clock = clock

    def run(
        self,
        record: DeployRecord,
        state: ColourState,
        left: Colour,
        since: float,
        policy: RollbackPolicy,
        *,
        error: str | None = None,
        settle: Callable[[RollbackResult | None], None] = lambda result: None,
    ) -> RollbackResult:
        """Roll back from ``left`` to the other colour; record, save, log, publish and notify.

        ``since``: the moment the rollback's time counts from (a deploy's failed verdict, the
        command's start). ``error``: why a deploy rolls back, kept in its record. ``settle``:
        the caller's last words in the record before it is saved (a deploy's load figures),
        given the result, or None when traffic never moved. Raises ``DeployError`` when the
        colour does not serve (the record and state then say where users are).
        """
        release_env = state.release_env()  # as they were: nothing retags a colour

        def stack() -> Stack:
            opened = self.adapters.open_stack()
            opened.release_env = release_env
            return opened

        result: RollbackResult | None = None
        try:
            try:
                result = self._switch_back(record, state, left, since, policy, stack)
            except LiveColourChanged as changed:  # only a standalone one expects a colour
                result = self._switch_back(record, state, changed.live, since, policy, stack)
            self.lock.sync()
            self._conclude(record, state, result, policy, stack)
            record.finish("rolled_back", error=error)
            return result
        except Exception as exc:
            record.finish("rolled_back", error=f"{error}; then: {exc}" if error else str(exc))
            raise
        finally:
            if result is not None or not policy.standalone:
                settle(result)
                outputs = self.outputs()
                records = RecordStore(self.config.state_dir, mask=outputs.mask_json)
                tell_end(record, records, outputs, self._warn)

    def _switch_back(
        self,
        record: DeployRecord,
        state: ColourState,
        left: Colour,
        since: float,
        policy: RollbackPolicy,
        stack: Callable[[], Stack],
    ) -> RollbackResult:
        to = other_colour(left)
        if policy.standalone:
            if to not in state.releases:
                raise DeployError(f"{to} never ran a release here: nothing to roll back to")
            record.release, record.from_colour, record.to_colour = state.releases[to], left, to
        return switch_back(
            lambda colour: stack().revive(colour), self.adapters.router,
            self.adapters.colour_serves, to, left, since, self.observer,
            retired=to in state.retired, expect_live=policy.standalone, clock=self.clock,
        )  # fmt: skip

    def _conclude(
        self,
        record: DeployRecord,
        state: ColourState,
        result: RollbackResult,
        policy: RollbackPolicy,
        stack: Callable[[], Stack],
    ) -> None:
        """The record's figures, the state, the event-log line; then the colour left, if verified.

        Unverified, the colour left is not touched: users may be on it, or it is the only
        other colour there is.
        """
        to, left = result.to_colour, result.left_colour
        record.rollback_s = round(result.back_s, 6)  # a hot one takes a millisecond or less
        if result.verified_s is not None:
            record.rollback_verified_s = round(result.verified_s, 6)
        state.live, state.last_deploy = result.live, record.id
        state.retired.discard(to)  # it ran all along, or it was started again
        if result.verified and policy.left_failed:
            state.releases.pop(left, None)  # never a rollback target
            state.retired.add(left)  # before the stop: a rollback then starts it first
        save_state(self.config.state_file, state)
        figures = {
            "from_colour": left,
            "to_colour": to,
            "live": result.live,
            "rollback_s": record.rollback_s,
            "rollback_verified_s": record.rollback_verified_s,
        }
        if not result.verified:
            problem = describe_failure(result)
            self._say("rollback", problem, level="error", **figures)
            raise DeployError(problem)
        self._say(
            "rollback",
            f"rolled back {left} -> {to} in {record.rollback_s:.3f}s, verified after "
            f"{record.rollback_verified_s:.3f}s",
            **figures,
        )
        cfg = self.config
        services = list(
            cfg.services.release_services_of(left)
            if policy.left_failed
            else cfg.services.workers_of(left)
        )
        if services:
            self._say("rollback.stop", f"stopping {', '.join(services)}", services=services)
            if policy.left_failed:
                record.logs = failed_logs(stack(), services, self.outputs().mask)
            stack().stop(services)

    def _say(self, event: str, message: str, **fields: object) -> None:
        outputs = self.outputs()
        self.progress(outputs.mask(message))
        outputs.emit(event, message=message, **fields)

    def _warn(self, event: str, message: str) -> None:
        self._say(event, message, level="warning")
