"""The deployment's view of the outside world: small Protocols, and the values that cross them.

The core decides (abort, switch, roll back, conclude, repair); the adapters act. Each Protocol
here is implemented by one adapter today (Compose on one host, HAProxy's runtime API, PostgreSQL,
Locust, the reporting outputs) and by fakes in the unit tests of the decisions; the next engines
(Swarm) and databases (MySQL, none, a team's own commands) implement the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.load_figures import Sample
from pytest_bluegreen.core.record import DeployRecord

NotificationKind = Literal["start", "success", "failure", "rollback"]
# Where a long step says how it goes, one line at a time (the terminal, a log).
Progress = Callable[[str], None]

# -- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerState:
    """One server of a colour as the router sees it (a line of HAProxy's ``show stat``)."""

    backend: str
    server: str
    status: str  # UP, DOWN, MAINT, "UP 1/2", "no check", ...
    current_sessions: int
    queued: int

    @property
    def up(self) -> bool:
        return self.status == "UP"


@dataclass(frozen=True, slots=True)
class SwitchResult:
    """How one switch went, each step in milliseconds.

    ``switch_ms`` is ``set map`` (traffic moves during it); ``verify_ms`` the check that the new
    colour holds; ``persist_ms`` the map file written, after the traffic moved.
    """

    from_colour: Colour
    to_colour: Colour
    preflight_ms: float
    switch_ms: float
    persist_ms: float
    verify_ms: float
    replicas: tuple[str, ...] = ()  # on a cluster: the nodes whose loadbalancer confirmed it

    @property
    def total_ms(self) -> float:
        return self.preflight_ms + self.switch_ms + self.persist_ms + self.verify_ms


@dataclass(frozen=True, slots=True)
class Preflight:
    """The router's state, read before a switch: it serves ``from_colour``, ``to_colour`` is UP."""

    from_colour: Colour
    to_colour: Colour
    taken_at: float  # the router's clock when the answer came
    took_ms: float


@dataclass(frozen=True, slots=True)
class DrainResult:
    """How a colour's drain went: the wait, and the sessions still open at the deadline, closed."""

    waited_s: float
    closed_sessions: int = 0  # long-lived connections (WebSocket, SSE, uploads) cut at the end


@dataclass(frozen=True, slots=True)
class ContainerState:
    """What the container engine says about one container."""

    id: str
    name: str
    status: str  # created, running, exited, ...
    health: str | None  # starting, healthy, unhealthy; None without a healthcheck
    exit_code: int
    restarts: int = 0  # how often its restart policy brought it back

    @property
    def ready(self) -> bool:
        return self.status == "running" and self.health in (None, "healthy")

    @property
    def failed(self) -> bool:
        return self.status in ("exited", "dead", "restarting") or self.health == "unhealthy"

    def describe(self) -> str:
        if self.status != "running":
            return f"{self.status} (exit code {self.exit_code})"
        return self.health or "running"


@dataclass(frozen=True, slots=True)
class BackupResult:
    """One verified backup."""

    path: Path
    sha256: str
    size_bytes: int
    row_counts: dict[str, int]  # table -> rows, counted in the snapshot of the dump
    dump_s: float
    verify_s: float


# -- the adapters ----------------------------------------------------------------------------


class Router(Protocol):
    """Sends users' requests to one colour; switching is one atomic step.

    ``preflight`` reads the state a switch needs and raises ``NotReadyError`` when the colour's
    servers are not UP, ``LiveColourChanged`` when ``expect_from`` is given and is not the
    colour it serves; ``switch`` makes one first unless given a fresh one. ``switch_now`` (a
    rollback's) reads and switches at once, and puts the old colour back when the check fails.
    """

    def active_colour(self) -> Colour: ...
    def servers(self, colour: Colour) -> list[ServerState]: ...
    def not_ready(self, colour: Colour) -> list[ServerState]: ...
    def wait_ready(self, colour: Colour, timeout_s: float) -> None: ...
    def drain(self, colour: Colour, timeout_s: float) -> DrainResult: ...
    def preflight(self, to_colour: Colour, *, expect_from: Colour | None = None) -> Preflight: ...
    def switch(
        self,
        to_colour: Colour,
        *,
        expect_from: Colour | None = None,
        preflight: Preflight | None = None,
    ) -> SwitchResult: ...
    def switch_now(
        self, to_colour: Colour, *, expect_from: Colour | None = None
    ) -> SwitchResult: ...
    def publish_releases(self, releases: Mapping[Colour, str], *, running: bool) -> None: ...


class Stack(Protocol):
    """The containers of both colours and the services they share, on one container engine."""

    release_env: dict[str, str]  # each colour's recorded release, seen by every command

    def prepare(self) -> None: ...
    def read_services(self) -> list[str]: ...
    def check_ports_free(self) -> None: ...
    def shared_services(self) -> list[str]: ...
    def build_missing_shared(self) -> list[str]: ...
    def running_services(self, services: Iterable[str]) -> list[str]: ...
    def start(self, services: Sequence[str]) -> None: ...
    def stop(self, services: Sequence[str]) -> None: ...
    def build(self, services: Sequence[str]) -> None: ...
    def recreate(self, services: Sequence[str]) -> None: ...
    def wait_healthy(self, services: Sequence[str], timeout_s: float) -> None: ...
    def migrate(self, colour: Colour, *, seed: bool) -> None: ...
    def start_router(self, colour: Colour) -> None: ...
    def revive(self, colour: Colour) -> None: ...
    def container_ids(self, service: str) -> list[str]: ...
    def container_state(self, container_id: str) -> ContainerState: ...
    def logs(self, container_id: str, tail: int) -> str: ...
    def prune_release_images(self, keep: int, protect: Iterable[str]) -> list[str]: ...
    def schedule_retire(self, colour: Colour, delay_s: float) -> None: ...
    def placement(self, services: Iterable[str]) -> dict[str, list[str]]: ...


class Database(Protocol):
    """The stack's database, as far as a deploy needs it: a verified backup."""

    def backup(self, name: str) -> BackupResult: ...


class Rehearsal(Protocol):
    """The migration rehearsal on a scratch copy of the backup (the gates drive the rest)."""

    scratch: str

    def prepare(self) -> None: ...
    def summary(self) -> dict[str, object]: ...
    def drop(self) -> None: ...


class LoadGenerator(Protocol):
    """Users' requests through the public URL, one sample each, from release to stop.

    ``launch`` does the slow part (a process, its imports, the users spawned) and sends no
    request: a deploy launches it during the gates. ``release`` lets the users send and returns
    once requests flow. ``stop`` ends it at any point, released or not.
    """

    def launch(self) -> None: ...
    def release(self) -> None: ...
    def samples(self) -> list[Sample]: ...
    def stop(self) -> None: ...


class Adapters(Protocol):
    """Everything a deployment acts on, opened when the prerequisites stage asks for it."""

    @property
    def router(self) -> Router: ...
    def open_stack(self) -> Stack: ...
    def database(self) -> Database: ...
    def rehearsal(self, dump: Path, new: Colour, live: Colour | None) -> Rehearsal: ...
    def load(self, max_seconds: float) -> LoadGenerator: ...
    def colour_serves(self, colour: Colour) -> list[str]: ...


class Outputs(Protocol):
    """What a deploy tells the outside: event log, webhooks, metrics.

    Everything goes through one secret policy (see :mod:`pytest_bluegreen.reporting`).
    """

    @property
    def secrets(self) -> tuple[str, ...]: ...
    def refresh_secrets(self) -> None: ...
    def mask(self, text: str) -> str: ...
    def mask_json(self, value: Any) -> Any: ...
    def emit(self, event: str, **fields: Any) -> None: ...
    def notify(self, kind: NotificationKind, record: DeployRecord) -> list[str]: ...
    def publish_metrics(self, record: DeployRecord) -> list[str]: ...
    def close(self) -> None: ...


class DeployObserver(Protocol):
    """Told when traffic moves, by a switch or a rollback (the pytest hooks listen here)."""

    def traffic_switched(self, from_colour: Colour, to_colour: Colour, reason: str) -> None: ...


class NoObserver:
    """An observer that listens to nothing."""

    def traffic_switched(self, from_colour: Colour, to_colour: Colour, reason: str) -> None:
        return None
