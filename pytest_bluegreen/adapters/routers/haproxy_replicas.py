"""Every HAProxy replica of a cluster's loadbalancer, driven as one router.

On a Swarm the loadbalancer runs one replica per node, each with its own runtime API on TCP and
its own in-memory map. A switch is the same ``set map`` sent to every replica at once, then
confirmed on each replica running at that moment, re-listed until they all agree: a replica that
restarted meanwhile (it adopts the colour of a running peer when it starts) is checked, and set
when it adopted the old colour. A switch that cannot be confirmed everywhere puts back the
replicas that answer and raises, so traffic is never left split between the colours.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from pytest_bluegreen.adapters.routers.haproxy import (
    MAP_KEY,
    HAProxyRouter,
    RuntimeAPI,
    wait_ready,
    write_map_file,
)
from pytest_bluegreen.core.colours import Colour, other_colour
from pytest_bluegreen.core.errors import LiveColourChanged, NotReadyError, RouterError
from pytest_bluegreen.core.ports import DrainResult, Preflight, ServerState, SwitchResult

T = TypeVar("T")
CONFIRM_POLL_S: Final = 0.1
# ``server-template`` slots with no task behind them: not servers, not a problem.
UNRESOLVED: Final = "MAINT (resolution)"


@dataclass(frozen=True, slots=True)
class Replica:
    """One running loadbalancer replica: its task, the node it runs on, its API's address."""

    task: str
    node: str
    address: str


class ReplicatedRouter:
    """The live colour as every replica holds it; one switch for all of them."""

    def __init__(
        self,
        replicas: Callable[[], list[Replica]],
        port: int,
        map_file: Path,
        backends_of: Callable[[Colour], Sequence[str]],
        expected_servers: Callable[[str], int],
        map_in_container: str = "/tmp/active.map",
        confirm_timeout_s: float = 30.0,
        ready_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.perf_counter,
        api_timeout_s: float = 2.0,
        api_for: Callable[[Replica], RuntimeAPI] | None = None,
    ) -> None:
        self.replicas = replicas
        self.port = port
        self.map_file = map_file
        self.backends_of = backends_of
        self.expected_servers = expected_servers
        self.map_in_container = map_in_container
        self.confirm_timeout_s = confirm_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self._clock = clock
        self._api_for = api_for or (
            lambda replica: RuntimeAPI((replica.address, port), timeout_s=api_timeout_s)
        )

    def router(self, replica: Replica) -> HAProxyRouter:
        """One replica as a single-host router (its map file is the deploy's own record)."""
        return HAProxyRouter(
            api=self._api_for(replica),
            map_file=self.map_file,
            map_in_container=self.map_in_container,
            backends_of=self.backends_of,
            clock=self._clock,
        )

    def _each(
        self, replicas: Sequence[Replica], call: Callable[[HAProxyRouter], T]
    ) -> dict[Replica, T | RouterError]:
        """``call`` on every replica side by side; a replica's RouterError is its answer."""

        def one(replica: Replica) -> T | RouterError:
            try:
                return call(self.router(replica))
            except RouterError as exc:
                return exc

        if not replicas:
            return {}
        with ThreadPoolExecutor(max_workers=len(replicas)) as pool:
            return dict(zip(replicas, pool.map(one, replicas), strict=True))

    def _running(self) -> list[Replica]:
        replicas = self.replicas()
        if not replicas:
            raise RouterError("no loadbalancer replica is running")
        return replicas

    def colours(self) -> dict[Replica, Colour | RouterError]:
        """Each running replica's live colour (or why it does not answer)."""
        return self._each(self._running(), lambda r: r.active_colour())

    def active_colour(self) -> Colour:
        """The colour every answering replica serves; an error when they disagree."""
        answers = self.colours()
        colours = {r: c for r, c in answers.items() if not isinstance(c, RouterError)}
        if not colours:
            raise RouterError(f"no loadbalancer replica answers: {_listing(answers)}")
        if len(set(colours.values())) > 1:
            raise RouterError(
                f"the loadbalancer replicas disagree ({_listing(answers)}): switch them all "
                "with `python -m pytest_bluegreen switch <colour>`"
            )
        return next(iter(colours.values()))

    def servers(self, colour: Colour) -> list[ServerState]:
        """``colour``'s servers on every replica, named ``node/server``.

        Empty template slots are left out; a backend with fewer servers UP than its service
        has replicas gets a ``missing`` row, and a replica that does not answer an
        ``unreachable`` row, so that neither counts as ready.
        """
        answers = self._each(self._running(), lambda r: r.servers(colour))
        return [row for r, states in answers.items() for row in self._rows(r, states, colour)]

    def _rows(
        self, replica: Replica, states: list[ServerState] | RouterError, colour: Colour
    ) -> list[ServerState]:
        """One replica's servers of ``colour``, with its missing and unreachable rows."""
        if isinstance(states, RouterError):
            return [ServerState("*", replica.node, f"unreachable: {states}", 0, 0)]
        rows: list[ServerState] = []
        for backend in self.backends_of(colour):
            own = [s for s in states if s.backend == backend and s.status != UNRESOLVED]
            rows += [
                ServerState(s.backend, f"{replica.node}/{s.server}", s.status,
                            s.current_sessions, s.queued)
                for s in own
            ]  # fmt: skip
            up = sum(s.up for s in own)
            expected = self.expected_servers(backend)
            if up < expected:
                rows.append(ServerState(backend, f"{replica.node}/-", f"{up}/{expected} UP", 0, 0))
        return rows

    def not_ready(self, colour: Colour) -> list[ServerState]:
        return [s for s in self.servers(colour) if not s.up]

    def wait_ready(self, colour: Colour, timeout_s: float) -> None:
        """Wait (bounded) until every replica sees every server of ``colour`` UP."""
        what = f"{colour} is not UP in every HAProxy replica"
        wait_ready(lambda: self.not_ready(colour), what, timeout_s, self._clock)

    def drain(self, colour: Colour, timeout_s: float) -> DrainResult:
        """Drain ``colour`` on every replica side by side; a gone replica has nothing left."""
        results = self._each(self._running(), lambda r: r.drain(colour, timeout_s))
        done = [r for r in results.values() if not isinstance(r, RouterError)]
        return DrainResult(
            max((r.waited_s for r in done), default=0.0),
            sum(r.closed_sessions for r in done),
        )

    def publish_releases(self, releases: Mapping[Colour, str], *, running: bool) -> None:
        """Each colour's release on every replica that answers (a new one adopts a peer's)."""
        if not running:
            self.router(Replica("", "", "")).publish_releases(releases, running=False)
            return
        answers = self._each(self._running(), lambda r: r.publish_releases(releases, running=True))
        if answers and all(isinstance(a, RouterError) for a in answers.values()):
            raise RouterError(f"no replica took the releases: {_listing(answers)}")

    def preflight(self, to_colour: Colour, *, expect_from: Colour | None = None) -> Preflight:
        """Every running replica sees ``to_colour`` UP (a bounded wait); the colour most serve."""
        start = self._clock()
        _, answers = self._preflight(to_colour)
        from_colour = self._most_served(answers, to_colour)
        if expect_from is not None and from_colour != expect_from:
            raise LiveColourChanged(from_colour, expect_from)
        done = self._clock()
        return Preflight(from_colour, to_colour, done, (done - start) * 1000)

    @staticmethod
    def _most_served(
        answers: Mapping[Replica, tuple[Colour, list[ServerState]] | RouterError], to_colour: Colour
    ) -> Colour:
        before = Counter(a[0] for a in answers.values() if not isinstance(a, RouterError))
        return before.most_common(1)[0][0] if before else other_colour(to_colour)

    def switch_now(self, to_colour: Colour, *, expect_from: Colour | None = None) -> SwitchResult:
        """A rollback's switch: on a cluster, the same as :meth:`switch` (replicas come and go)."""
        return self.switch(to_colour, expect_from=expect_from)

    def switch(
        self,
        to_colour: Colour,
        *,
        expect_from: Colour | None = None,
        preflight: Preflight | None = None,
    ) -> SwitchResult:
        """``set map`` on every replica at once, then confirmed on every running replica.

        The preflight is always made here, whatever is given: which replicas run is part of it.
        With ``expect_from``, refused before any change when the replicas serve another colour.
        """
        clock = self._clock
        start = clock()
        replicas, answers = self._preflight(to_colour)
        from_colour = self._most_served(answers, to_colour)
        if expect_from is not None and from_colour != expect_from:
            raise LiveColourChanged(from_colour, expect_from)
        preflight_done = clock()
        self._set(replicas, to_colour)
        switched = clock()
        write_map_file(self.map_file, to_colour)
        persisted = clock()
        try:
            confirmed = self._confirm(to_colour)
        except RouterError:
            self._set(self.replicas(), from_colour)  # best effort: never leave traffic split
            raise
        verified = clock()
        return SwitchResult(
            from_colour=from_colour,
            to_colour=to_colour,
            preflight_ms=(preflight_done - start) * 1000,
            switch_ms=(switched - preflight_done) * 1000,
            persist_ms=(persisted - switched) * 1000,
            verify_ms=(verified - persisted) * 1000,
            replicas=tuple(sorted(r.node for r in confirmed)),
        )

    def _preflight(
        self, to_colour: Colour
    ) -> tuple[list[Replica], dict[Replica, tuple[Colour, list[ServerState]] | RouterError]]:
        """Every running replica's colour, once each sees ``to_colour``'s servers all UP.

        Bounded by ``ready_timeout_s``: a task the scheduler is moving off a lost node, or a
        replica on a node not yet known to be down, is waited for; past the bound, refused.
        """
        deadline = self._clock() + self.ready_timeout_s
        while True:
            replicas = self._running()
            answers = self._each(replicas, lambda r: (r.active_colour(), r.servers(to_colour)))
            down = [
                f"{s.backend}/{s.server} {s.status}"
                for replica, answer in answers.items()
                for s in self._rows(
                    replica, answer if isinstance(answer, RouterError) else answer[1], to_colour
                )
                if not s.up
            ]
            if not down:
                return replicas, answers
            if self._clock() >= deadline:
                raise NotReadyError(
                    f"refusing to switch to {to_colour}: not UP in HAProxy: {', '.join(down)}"
                )
            time.sleep(0.2)

    def _set(self, replicas: Sequence[Replica], colour: Colour) -> dict[Replica, str | RouterError]:
        command = f"set map {self.map_in_container} {MAP_KEY} {colour}"
        return self._each(replicas, lambda r: r.api.execute(command).strip())

    def _confirm(self, to_colour: Colour) -> list[Replica]:
        """Until every replica running now answers ``to_colour`` (bounded); set the stragglers."""
        deadline = self._clock() + self.confirm_timeout_s
        confirmed: set[Replica] = set()
        while True:
            current = self._running()
            pending = [r for r in current if r not in confirmed]
            answers = self._each(pending, lambda r: r.active_colour())
            stragglers = [r for r, a in answers.items() if a == other_colour(to_colour)]
            confirmed |= {r for r, a in answers.items() if a == to_colour}
            if stragglers:
                self._set(stragglers, to_colour)
            left = {r: answers[r] for r in pending if r not in confirmed}
            if not left:
                return [r for r in current if r in confirmed]
            if self._clock() >= deadline:
                raise RouterError(
                    f"the switch to {to_colour} was not confirmed by every loadbalancer replica "
                    f"within {self.confirm_timeout_s:.0f}s ({_listing(left)}); the replicas "
                    "that answer were put back"
                )
            time.sleep(CONFIRM_POLL_S)


def _listing(answers: Mapping[Replica, object]) -> str:
    return ", ".join(f"{r.node}: {a}" for r, a in answers.items())
