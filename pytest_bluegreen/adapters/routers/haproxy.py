"""HAProxy as the traffic router: read and switch the live colour through the runtime API.

A switch never reloads HAProxy: ``set map`` changes the live colour for the next request, keep-alive
connections included, and the map file is rewritten atomically so the colour survives a restart.
The state is read before the command (the preflight: the live colour, and the new colour's
servers UP), so the command itself is one round trip that sets the map and reads it back;
persisting the map file comes after, as the traffic has already moved. A rollback's switch
reads, sets and reads back in one round trip and checks after (``bench/switch.py`` and
``bench/rollback.py`` measure both).
"""

from __future__ import annotations

import csv
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from pytest_bluegreen.core.colours import Colour, is_colour
from pytest_bluegreen.core.config import LB_STATE_IN_CONTAINER, StackConfig
from pytest_bluegreen.core.errors import (
    BluegreenError,
    LiveColourChanged,
    NotReadyError,
    RouterError,
)
from pytest_bluegreen.core.files import write_atomically
from pytest_bluegreen.core.ports import DrainResult, Preflight, ServerState, SwitchResult

MAP_KEY: Final = "active"
# Server rows only (every proxy, type 4 = servers, every server): a fraction of the full
# ``show stat``, which a switch's preflight and a drain's polling read under load.
SHOW_SERVERS: Final = "show stat -1 4 -1"
DRAIN_POLL_S: Final = 0.005  # a request still in flight should not cost a 50 ms poll
SHUTDOWN_GRACE_S: Final = 5.0  # shut-down sessions are killed asynchronously, within a moment
PREFLIGHT_FRESH_S: Final = 0.5  # a preflight read this recently stands for one made now


class RuntimeAPI:
    """HAProxy's admin socket, one command per connection (its non-interactive mode).

    A Unix socket on this host (``Path``), or a replica's TCP port on a node (``(host, port)``).
    """

    def __init__(self, address: Path | tuple[str, int], timeout_s: float = 3.0) -> None:
        self.address = address
        self.timeout_s = timeout_s

    @property
    def where(self) -> str:
        if isinstance(self.address, Path):
            return str(self.address)
        return f"{self.address[0]}:{self.address[1]}"

    def execute(self, command: str) -> str:
        family = socket.AF_UNIX if isinstance(self.address, Path) else socket.AF_INET
        target = str(self.address) if isinstance(self.address, Path) else self.address
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(target)
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise RouterError(
                f"HAProxy's runtime API is not reachable at {self.where} ({exc.strerror}); "
                "is the loadbalancer running?"
            ) from None
        except OSError as exc:
            raise RouterError(f"HAProxy's runtime API at {self.where}: {exc}") from None
        return b"".join(chunks).decode("utf-8", "replace")

    def execute_all(self, commands: Sequence[str]) -> list[str]:
        """Several commands in one round trip (``;``-separated); each one's answer, in order.

        HAProxy ends every answer with an empty line, which is how they are told apart.
        """
        text = self.execute(";".join(commands))
        answers: list[str] = []
        current: list[str] = []
        for line in text.split("\n"):
            if line:
                current.append(line)
                continue
            answers.append("\n".join(current))
            current = []
            if len(answers) == len(commands):
                return answers
        raise RouterError(
            f"HAProxy at {self.where} answered {len(answers)} of {len(commands)} commands"
        )


def parse_show_stat(text: str) -> list[ServerState]:
    """The server rows of ``show stat`` CSV (frontend and backend summary rows are left out).

    Read by column position: a switch's preflight parses it between the command and ``set map``.
    """
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise RouterError(f"unexpected 'show stat' answer: {text[:200]!r}")
    rows = csv.reader(lines)
    header = next(rows)
    column = {name.removeprefix("# "): i for i, name in enumerate(header)}
    backend, server, status = column["pxname"], column["svname"], column["status"]
    scur, qcur = column["scur"], column["qcur"]
    return [
        ServerState(
            backend=row[backend],
            server=row[server],
            status=row[status],
            current_sessions=int(row[scur] or 0),
            queued=int(row[qcur] or 0),
        )
        for row in rows
        if row[server] not in ("FRONTEND", "BACKEND")
    ]


def parse_show_map(text: str) -> dict[str, str]:
    """``show map`` lines are ``<0xid> <key> <value>``; anything else is HAProxy's error text."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith("0x"):
            entries[parts[1]] = parts[2]
        elif line.strip():
            raise RouterError(f"unexpected 'show map' line: {line!r}")
    return entries


def write_map_file(path: Path, colour: Colour) -> None:
    """Rewrite the map file atomically: ``set map`` alone is lost when HAProxy restarts."""
    write_atomically(path, f"{MAP_KEY} {colour}\n", mode=0o644)


RELEASES_MAP: Final = "releases.map"
RELEASE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")


def write_releases_map(path: Path, releases: Mapping[Colour, str]) -> None:
    """Each colour's release, for HAProxy to add as ``X-Bluegreen-Release`` to its responses."""
    lines = "".join(f"{c} {r}\n" for c, r in sorted(releases.items()) if RELEASE_ID.fullmatch(r))
    write_atomically(path, lines, mode=0o644)


def read_map_file(path: Path) -> Colour | None:
    if not path.is_file():
        return None
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == MAP_KEY and is_colour(parts[1]):
            return parts[1]
    return None


def wait_ready(
    not_ready: Callable[[], list[ServerState]],
    what: str,
    timeout_s: float,
    clock: Callable[[], float] = time.perf_counter,
    *,
    poll_s: float = 0.05,
    meanwhile: Callable[[], None] = lambda: None,
    error: type[BluegreenError] = RouterError,
) -> None:
    """Poll ``not_ready`` until it is empty; past ``timeout_s``, ``what`` and the servers left.

    Every 50 ms by default: a ``show stat`` of the servers costs HAProxy little, and a server
    seen UP late is time a revive or a deploy waits for nothing. ``meanwhile`` runs before
    each look at the deadline (a revive asks Docker whether a container failed there).
    """
    deadline = clock() + timeout_s
    while down := not_ready():
        meanwhile()
        if clock() >= deadline:
            listing = ", ".join(f"{s.backend}/{s.server} {s.status}" for s in down)
            raise error(f"{what} after {timeout_s:.0f}s: {listing}")
        time.sleep(poll_s)


def haproxy_router(config: StackConfig) -> HAProxyRouter:
    """The stack's one HAProxy, through its admin socket on this host."""
    return HAProxyRouter(
        api=RuntimeAPI(config.admin_socket),
        map_file=config.map_file,
        map_in_container=f"{LB_STATE_IN_CONTAINER}/{config.map_file.name}",
        backends_of=config.router.backends_of,
    )


class HAProxyRouter:
    """The live colour, as HAProxy itself holds it."""

    def __init__(
        self,
        api: RuntimeAPI,
        map_file: Path,
        map_in_container: str,
        backends_of: Callable[[Colour], Sequence[str]],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.api = api
        self.map_file = map_file
        self.map_in_container = map_in_container
        self.backends_of = backends_of
        self._clock = clock

    def publish_releases(self, releases: Mapping[Colour, str], *, running: bool) -> None:
        """Tell HAProxy each colour's release: the map file, and at run time when it runs.

        A configuration that does not read the releases map (an app that sends its own
        header) makes HAProxy answer "Unknown map identifier": nothing to tell it then.
        """
        path = self.map_file.with_name(RELEASES_MAP)
        write_releases_map(path, releases)
        in_container = f"{self.map_in_container.rpartition('/')[0]}/{RELEASES_MAP}"
        if not running:
            return  # it reads the file when it starts
        for colour, release in releases.items():
            if not RELEASE_ID.fullmatch(release):
                continue
            answer = self.api.execute(f"set map {in_container} {colour} {release}").strip()
            if "not found" in answer.lower():
                answer = self.api.execute(f"add map {in_container} {colour} {release}").strip()
            if answer and "unknown map" not in answer.lower():
                raise RouterError(f"HAProxy refused the release of {colour}: {answer}")

    def active_colour(self) -> Colour:
        return self._colour_in(self.api.execute(f"show map {self.map_in_container}"))

    def _colour_in(self, show_map: str) -> Colour:
        value = parse_show_map(show_map).get(MAP_KEY)
        if not is_colour(value):
            raise RouterError(f"HAProxy's map {self.map_in_container} has no valid {MAP_KEY!r}")
        return value

    def servers(self, colour: Colour) -> list[ServerState]:
        return self._servers_in(self.api.execute(SHOW_SERVERS), colour)

    def _servers_in(self, show_stat: str, colour: Colour) -> list[ServerState]:
        backends = set(self.backends_of(colour))
        states = [s for s in parse_show_stat(show_stat) if s.backend in backends]
        missing = backends - {s.backend for s in states}
        if missing:
            raise RouterError(f"HAProxy has no backend named {', '.join(sorted(missing))}")
        return states

    def not_ready(self, colour: Colour) -> list[ServerState]:
        """The servers of ``colour`` that HAProxy does not see UP."""
        return [s for s in self.servers(colour) if not s.up]

    def wait_ready(self, colour: Colour, timeout_s: float) -> None:
        """Wait (bounded) until HAProxy's own health checks see every server of ``colour`` UP."""
        what = f"{colour} is not UP in HAProxy"
        wait_ready(lambda: self.not_ready(colour), what, timeout_s, self._clock)

    def drain(self, colour: Colour, timeout_s: float) -> DrainResult:
        """Wait (bounded) until ``colour`` has no current or queued sessions.

        Sessions still open at the deadline (a WebSocket, a server-sent event stream, a slow
        upload) are closed with ``shutdown sessions server``: a colour that finished serving
        everything else is retired, not kept for a connection that may never end.
        """
        start = self._clock()
        while busy := [s for s in self.servers(colour) if s.current_sessions or s.queued]:
            if self._clock() - start >= timeout_s:
                for server in busy:
                    self.api.execute(f"shutdown sessions server {server.backend}/{server.server}")
                self._wait_closed(colour)
                closed = sum(s.current_sessions for s in busy)
                return DrainResult(self._clock() - start, closed)
            time.sleep(DRAIN_POLL_S)
        return DrainResult(self._clock() - start)

    def _wait_closed(self, colour: Colour) -> None:
        """HAProxy kills shut-down sessions on its next pass: wait (bounded) until they are gone.

        Past the bound it returns all the same: stopping the colour closes what is left.
        """
        deadline = self._clock() + SHUTDOWN_GRACE_S
        while any(s.current_sessions for s in self.servers(colour)) and self._clock() < deadline:
            time.sleep(DRAIN_POLL_S)

    def preflight(self, to_colour: Colour, *, expect_from: Colour | None = None) -> Preflight:
        """One round trip: the live colour, and every server of ``to_colour`` UP in HAProxy.

        Raises :class:`NotReadyError` when one is not, :class:`LiveColourChanged` when HAProxy
        serves another colour than ``expect_from``.
        """
        where = self.map_in_container
        start = self._clock()
        show_map, show_stat = self.api.execute_all([f"show map {where}", SHOW_SERVERS])
        from_colour = self._check(show_map, show_stat, to_colour, expect_from)
        done = self._clock()
        return Preflight(from_colour, to_colour, done, (done - start) * 1000)

    def _check(
        self, show_map: str, show_stat: str, to_colour: Colour, expect_from: Colour | None
    ) -> Colour:
        """The live colour in ``show_map``, once the answers allow a switch to ``to_colour``."""
        from_colour = self._colour_in(show_map)
        if expect_from is not None and from_colour != expect_from:
            raise LiveColourChanged(from_colour, expect_from)
        down = [s for s in self._servers_in(show_stat, to_colour) if not s.up]
        if down:
            listing = ", ".join(f"{s.backend}/{s.server} {s.status}" for s in down)
            raise NotReadyError(f"refusing to switch to {to_colour}: not UP in HAProxy: {listing}")
        return from_colour

    def switch(
        self,
        to_colour: Colour,
        *,
        expect_from: Colour | None = None,
        preflight: Preflight | None = None,
    ) -> SwitchResult:
        """Send new requests to ``to_colour``: ``set map`` read back in one round trip, persist.

        The preflight is the one given when it is for ``to_colour`` and younger than
        ``PREFLIGHT_FRESH_S`` (HAProxy's own view of a server is older than that: its checks
        run every second), else one is made first; refused then with nothing changed.
        """
        fresh = (
            preflight is not None
            and preflight.to_colour == to_colour
            and self._clock() - preflight.taken_at <= PREFLIGHT_FRESH_S
            and expect_from in (None, preflight.from_colour)
        )
        if not fresh or preflight is None:
            preflight = self.preflight(to_colour, expect_from=expect_from)
        where = self.map_in_container
        start = self._clock()
        answer, show_map = self.api.execute_all(
            [f"set map {where} {MAP_KEY} {to_colour}", f"show map {where}"]
        )
        switched = self._clock()
        self._confirm(answer, show_map, to_colour)
        verified = self._clock()
        write_map_file(self.map_file, to_colour)
        return SwitchResult(
            from_colour=preflight.from_colour,
            to_colour=to_colour,
            preflight_ms=preflight.took_ms,
            switch_ms=(switched - start) * 1000,
            verify_ms=(verified - switched) * 1000,
            persist_ms=(self._clock() - verified) * 1000,
        )

    def switch_now(self, to_colour: Colour, *, expect_from: Colour | None = None) -> SwitchResult:
        """A rollback's switch: read, ``set map`` and read back in one round trip, then check.

        When HAProxy does not see ``to_colour`` UP, the colour it served is set again at once
        (for that one round trip, new requests went to servers HAProxy holds DOWN) and
        :class:`NotReadyError` raised; with ``expect_from`` not the colour it served, the
        ``set map`` changed nothing (two colours: it served ``to_colour`` already) and
        :class:`LiveColourChanged` is raised.
        """
        where = self.map_in_container
        start = self._clock()
        show_map, show_stat, answer, after = self.api.execute_all(
            [
                f"show map {where}",
                SHOW_SERVERS,
                f"set map {where} {MAP_KEY} {to_colour}",
                f"show map {where}",
            ]
        )
        switched = self._clock()
        try:
            from_colour = self._check(show_map, show_stat, to_colour, expect_from)
        except NotReadyError:
            self.api.execute(f"set map {where} {MAP_KEY} {self._colour_in(show_map)}")
            raise
        self._confirm(answer, after, to_colour)
        verified = self._clock()
        write_map_file(self.map_file, to_colour)
        return SwitchResult(
            from_colour=from_colour,
            to_colour=to_colour,
            preflight_ms=0.0,  # in the same round trip as set map
            switch_ms=(switched - start) * 1000,
            verify_ms=(verified - switched) * 1000,
            persist_ms=(self._clock() - verified) * 1000,
        )

    def _confirm(self, answer: str, show_map: str, to_colour: Colour) -> None:
        """``set map`` answered nothing and the map now says ``to_colour``."""
        if answer.strip():
            raise RouterError(f"HAProxy refused 'set map': {answer.strip()}")
        now_active = self._colour_in(show_map)
        if now_active != to_colour:
            raise RouterError(f"switch to {to_colour} did not hold: HAProxy serves {now_active}")
