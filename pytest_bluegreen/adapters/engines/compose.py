"""The Compose stack of one blue-green deployment: prepare, build, bring up, take down.

Bring-up is ordered so that a bad input fails before anything starts (Compose file, images,
HAProxy's configuration), and a failure while starting removes what this call started.
What the Swarm engine does the same way (files, images, the retire, the preview) is the
:class:`~pytest_bluegreen.adapters.engines.project.Project` it holds too.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar, Final

from pytest_bluegreen.adapters.engines import Engine
from pytest_bluegreen.adapters.engines.compose_cli import (
    Compose,
    PublishedPort,
    ServiceSpec,
    detect_compose_command,
)
from pytest_bluegreen.adapters.engines.docker_api import DockerEngine
from pytest_bluegreen.adapters.engines.project import (
    REVIVE_SERVING_TIMEOUT_S,
    Project,
    generated_secrets,
)
from pytest_bluegreen.adapters.routers import router_for
from pytest_bluegreen.adapters.routers.haproxy import wait_ready, write_map_file
from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.config import PORT_SETTINGS, StackConfig
from pytest_bluegreen.core.errors import BluegreenError, CommandTimeout, PortInUse, StackError
from pytest_bluegreen.core.ports import ContainerState, Progress, Router

HAPROXY_CONFIG_IN_CONTAINER: Final = "/usr/local/etc/haproxy/haproxy.cfg"
# A revive asks HAProxy's runtime API this often: each wait is time users spend on the colour
# that failed (a show stat costs HAProxy little).
REVIVE_POLL_S: Final = 0.02
CONTAINER_POLL_S: Final = 0.5  # Docker, for a container that exited meanwhile


def port_in_use(port: PublishedPort) -> bool:
    """Whether another program listens where Docker would bind ``port``.

    SO_REUSEADDR, as Docker's own proxy sets it: a port left in TIME_WAIT is free, only a
    listener makes the bind fail.
    """
    family = socket.AF_INET6 if ":" in port.host_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((port.host_ip, port.port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


class ComposeStack:
    """One blue-green Compose project on this host's Docker engine, behind one HAProxy."""

    router_kind: ClassVar[str] = "haproxy"
    runs_on_this_host: ClassVar[bool] = True

    def __init__(
        self,
        config: StackConfig,
        progress: Progress = lambda message: None,
        engine: DockerEngine | None = None,
        compose_command: tuple[str, ...] | None = None,
        *,
        router: Router | None = None,
    ) -> None:
        self.project = Project(
            config,
            progress,
            engine or DockerEngine(),
            compose_command or detect_compose_command(),
        )
        self.router: Router = router or router_for(config)  # the admin socket only, no Docker

    # -- the project's, shared with every engine ------------------------------------------------

    @property
    def config(self) -> StackConfig:
        return self.project.config

    @property
    def progress(self) -> Progress:
        return self.project.progress

    @property
    def engine(self) -> DockerEngine:
        return self.project.engine

    @property
    def release_env(self) -> dict[str, str]:
        """Set by a deploy: BLUE_RELEASE/GREEN_RELEASE as recorded, over the environment's."""
        return self.project.release_env

    @release_env.setter
    def release_env(self, value: dict[str, str]) -> None:
        self.project.release_env = value

    @property
    def compose(self) -> Compose:
        return self.project.compose

    def read_services(self) -> list[str]:
        return self.project.read_services()

    def shared_services(self, specs: dict[str, ServiceSpec] | None = None) -> list[str]:
        return self.project.shared_services(specs)

    def prepare(self, live: Colour = "blue") -> None:
        self.project.prepare(live, self.running_services)

    def prune_release_images(
        self, keep: int, protect: Iterable[str], specs: dict[str, ServiceSpec] | None = None
    ) -> list[str]:
        return self.project.prune_release_images(keep, protect, specs)

    def schedule_retire(self, colour: Colour, delay_s: float) -> None:
        self.project.schedule_retire(colour, delay_s)

    # -- Compose's own ---------------------------------------------------------------------------

    def build_missing_shared(self) -> list[str]:
        """Build the shared services' images that this engine lacks (see build_missing)."""
        specs = self.project.specs()
        return self.build_missing(specs, self.shared_services(specs))

    def build_missing(self, specs: dict[str, ServiceSpec], services: Sequence[str]) -> list[str]:
        """Build those of ``services`` whose image this engine lacks; return their names.

        On a new machine nothing is built yet: the services both colours share must exist
        before the backup needs the database, whatever a deploy builds for its colour later.
        """
        missing = [
            name
            for name in services
            if specs[name].builds and self.engine.image_id(specs[name].image) is None
        ]
        if missing:
            self.progress(f"building {', '.join(missing)}: their images are not on this engine yet")
            self._build(missing)
        return missing

    def check_ports_free(self, specs: dict[str, ServiceSpec] | None = None) -> None:
        """Every port a stopped service will publish is free: one clear error, nothing started.

        A running service holds its own ports; Docker's own error would come only once the
        deploy has changed things, and name neither the port's setting nor the fix.
        """
        for name, spec in (self.project.specs() if specs is None else specs).items():
            if spec.profiles or not spec.ports or self.running_services([name]):
                continue
            for port in spec.ports:
                if not port_in_use(port):
                    continue
                setting = next((k for k in PORT_SETTINGS if self.config.port(k) == port.port), None)
                fix = (
                    f"set {setting} (in {self.config.env_file} or the environment) to a free port"
                    if setting
                    else f"change the ports of {name} in the Compose file"
                )
                raise PortInUse(
                    f"port {port.port} on {port.host_ip}, which {name} publishes, is already in "
                    f"use by another program: stop it, or {fix}"
                )

    def check_haproxy_config(self) -> None:
        """Run ``haproxy -c`` in a throwaway loadbalancer container: bad configs never start."""
        lb = self.config.services.loadbalancer
        try:
            self.compose.run_once(lb, ["haproxy", "-c", "-f", HAPROXY_CONFIG_IN_CONTAINER], 120)
        except BluegreenError as exc:
            raise StackError(f"HAProxy rejects its configuration:\n{exc}") from None

    def up(self, colours: Sequence[Colour] = ("blue", "green"), live: Colour = "blue") -> None:
        """Build and start the database, ``colours`` and the loadbalancer, all healthy."""
        cfg = self.config
        start = time.monotonic()
        self.prepare(live)
        self.check_ports_free(self.compose.services())
        colour_services = [s for c in colours for s in cfg.services.release_services_of(c)]
        database = [cfg.database.service] if cfg.has_database else []
        services = [*database, *colour_services, cfg.services.loadbalancer]
        self.progress(f"building {', '.join(services)}")
        self._build(services)
        running_before = set(self.running_services(services))
        try:
            self.check_haproxy_config()
            self.start([*database, *self._absent_shared(database)])
            if colours and cfg.has_migrations:
                self.migrate(colours[0])
            self.start(colour_services)
            self.start([cfg.services.loadbalancer])
            for colour in colours:
                self.router.wait_ready(colour, timeout_s=60)
        except BluegreenError:
            self._remove_started(services, running_before)
            raise
        self.progress(f"stack healthy in {time.monotonic() - start:.1f}s")

    def _absent_shared(self, own: Sequence[str]) -> list[str]:
        """Shared services (a cache, a queue) other than ``own`` and the router, not running."""
        lb = self.config.services.loadbalancer
        shared = [s for s in self.shared_services() if s not in own and s != lb]
        return [s for s in shared if not self.running_services([s])]

    def start_router(self, colour: Colour) -> None:
        """Start the loadbalancer with ``colour`` live: its configuration checked first."""
        self.check_haproxy_config()
        write_map_file(self.config.map_file, colour)
        self.start([self.config.services.loadbalancer])

    def build(self, services: Sequence[str]) -> None:
        self._build(services)

    def database_container(self, service: str) -> str:
        """The database service's one container, for ``docker exec``."""
        (container_id,) = self.container_ids(service)
        return container_id

    def _build(self, services: Sequence[str]) -> None:
        """Build, bounded by ``build_timeout_s``."""
        try:
            self.compose.build(services, timeout=self.config.engine.build_timeout_s)
        except CommandTimeout as exc:
            raise CommandTimeout(
                f"{exc} (engine.build_timeout_s: {self.config.engine.build_timeout_s:g}s)"
            ) from None

    def recreate(self, services: Sequence[str]) -> None:
        """Start ``services`` in new containers (a new release), not waiting for health."""
        self.compose.up(services, force_recreate=True)

    def container_state(self, container_id: str) -> ContainerState:
        return self.engine.state(container_id)

    def logs(self, container_id: str, tail: int = 50) -> str:
        return self.engine.logs(container_id, tail=tail)

    def start(self, services: Sequence[str]) -> None:
        self.progress(f"starting {', '.join(services)}")
        self.compose.up(services)
        self.wait_healthy(services, self.config.engine.healthy_timeout_s)

    def stop(self, services: Sequence[str], timeout_s: int | None = None) -> None:
        """Stop the services' containers at once, side by side; the containers are kept.

        Each in its own time by default: Compose gave every container its service's
        ``stop_grace_period`` (10 s when it has none), so a worker finishes its job.
        """
        ids = [i for service in services for i in self.container_ids(service, running_only=True)]
        self.engine.stop(ids, timeout_s)

    def revive(self, colour: Colour) -> None:
        """Make ``colour`` ready for traffic again (a retired colour, for a rollback).

        Its kept containers are started when Docker has any of them stopped: HAProxy alone is
        no witness, as it still sees a just-stopped server UP until ``fall`` checks have failed.
        They start all at once, side by side. Then it waits for what traffic needs, not for
        Docker's healthcheck, whose interval would come on top of the app's start: HAProxy's
        own health check sees every server of the colour UP, and the colour answers every
        critical path on its preview. Workers have no server: they are waited for healthy in
        Docker's eyes, after that (they started with the rest, so mostly they already are).
        A container that exits or turns unhealthy meanwhile fails it at once, with its logs.
        """
        cfg = self.config
        services = list(cfg.services.release_services_of(colour))
        stopped = self._stopped_containers(services)
        if not stopped and not self.router.not_ready(colour):
            return
        if stopped:
            self.progress(f"starting the retired {colour} colour ({', '.join(stopped)})")
            self._start_stopped(stopped)
        self._wait_up(colour, services, cfg.engine.healthy_timeout_s)
        self.progress(f"{colour} is UP in HAProxy")
        self.project.wait_serving(colour, REVIVE_SERVING_TIMEOUT_S)
        self.progress(f"{colour} answers on its preview")
        workers = list(cfg.services.workers_of(colour))
        if workers:
            self.wait_healthy(workers, cfg.engine.healthy_timeout_s)

    def _stopped_containers(self, services: Sequence[str]) -> dict[str, list[str]]:
        """Each of ``services`` that has a container not running, with those containers.

        A service with no container at all is listed with none: Compose says why it cannot
        start it.
        """
        stopped: dict[str, list[str]] = {}
        for service in services:
            every = self.container_ids(service)
            running = set(self.container_ids(service, running_only=True)) if every else set()
            if not every or len(running) < len(every):
                stopped[service] = [i for i in every if i not in running]
        return stopped

    def _start_stopped(self, stopped: dict[str, list[str]]) -> None:
        """Start the containers side by side through the Engine API (Compose: none to start)."""
        self.engine.start([i for ids in stopped.values() for i in ids])
        without = [service for service, ids in stopped.items() if not ids]
        if without:
            self.compose.start(without)

    def _wait_up(self, colour: Colour, services: Sequence[str], timeout_s: float) -> None:
        """Wait (bounded) until HAProxy's own check sees every server of ``colour`` UP.

        Docker is asked every :data:`CONTAINER_POLL_S` too: a container that exits, restarts
        or is unhealthy will not come UP, and its logs say why now rather than at the bound.
        """
        next_look = time.monotonic()

        def look_at_docker() -> None:
            nonlocal next_look
            if time.monotonic() >= next_look:
                for service in services:
                    self._raise_if_failed(
                        service, map(self.engine.state, self.container_ids(service))
                    )
                next_look = time.monotonic() + CONTAINER_POLL_S

        wait_ready(
            lambda: self.router.not_ready(colour),
            f"{colour} is not UP in HAProxy",
            timeout_s,
            time.monotonic,
            poll_s=REVIVE_POLL_S,
            meanwhile=look_at_docker,
            error=StackError,
        )

    def _raise_if_failed(self, service: str, states: Iterable[ContainerState]) -> None:
        """The first failed container of ``service`` ends a wait at once, with its last logs."""
        failed = next((state for state in states if state.failed), None)
        if failed is not None:
            logs = self.engine.logs(failed.id)
            raise StackError(f"{service} is {failed.describe()}; its last logs:\n{logs}")

    def migrate(self, colour: Colour, *, seed: bool = True) -> None:
        """Apply the schema (and the seed data) with ``colour``'s image."""
        cfg = self.config
        if not cfg.migrations.command:
            return
        service = cfg.migrate_service_of(colour)
        self.progress(f"migrating the database with {service}")
        commands = [
            cfg.migrations.command,
            *([cfg.migrations.seed_command] if seed and cfg.migrations.seed_command else []),
        ]
        for command in commands:
            try:
                self.compose.run_once(service, command, timeout=cfg.engine.command_timeout_s)
            except CommandTimeout as exc:
                raise CommandTimeout(
                    f"{exc}; its container was removed (engine.command_timeout_s: "
                    f"{cfg.engine.command_timeout_s:g}s)"
                ) from None

    def container_ids(self, service: str, *, running_only: bool = False) -> list[str]:
        """The service's own containers (never the one-off ones of ``compose run``)."""
        return self.engine.service_containers(
            self.config.project_name, service, running_only=running_only
        )

    def running_services(self, services: Iterable[str]) -> list[str]:
        return [s for s in services if self.container_ids(s, running_only=True)]

    def placement(self, services: Iterable[str]) -> dict[str, list[str]]:
        """The host's name once per running container of each service (one host here)."""
        host = socket.gethostname()
        return {s: [host] * len(self.container_ids(s, running_only=True)) for s in services}

    def wait_healthy(self, services: Sequence[str], timeout_s: float) -> None:
        """Wait (bounded) until Docker reports every container of ``services`` healthy."""
        deadline = time.monotonic() + timeout_s
        pending = list(services)
        while pending:
            for service in list(pending):
                ids = self.container_ids(service)
                if not ids:
                    raise StackError(f"{service} has no container")
                states = [self.engine.state(i) for i in ids]
                self._raise_if_failed(service, states)
                if all(s.ready for s in states):
                    pending.remove(service)
                    self.progress(f"{service} healthy")
            if pending and time.monotonic() >= deadline:
                raise StackError(f"not healthy after {timeout_s:.0f}s: {', '.join(pending)}")
            if pending:
                time.sleep(0.5)

    def down(self, *, volumes: bool = False) -> None:
        """Remove the stack; works before prepare() too (Compose wants every secret set)."""
        self.progress("removing the stack" + (" and its volumes" if volumes else ""))
        example = self.config.project_dir / ".env.example"
        placeholders = {key: "unused-by-down" for key in generated_secrets(example)}
        self.project.compose_in({**placeholders, **self.config.environment}).down(volumes=volumes)

    def _remove_started(self, services: Sequence[str], running_before: set[str]) -> None:
        """After a failed bring-up, remove what this call started (keep what ran before)."""
        started = [s for s in services if s not in running_before]
        try:
            if not running_before:
                self.compose.down()
            elif started:
                self.compose.remove(started)
        except BluegreenError as exc:
            self.progress(f"warning: cleaning up after the failure failed too: {exc}")


if TYPE_CHECKING:
    _IS_AN_ENGINE: type[Engine] = ComposeStack  # mypy: the registry may hand it out
