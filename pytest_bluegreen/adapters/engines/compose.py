"""The Compose stack of one blue-green deployment: prepare, build, bring up, take down.

Bring-up is ordered so that a bad input fails before anything starts (Compose file, images,
HAProxy's configuration), and a failure while starting removes what this call started.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from pytest_bluegreen.adapters.engines.compose_cli import (
    Compose,
    PublishedPort,
    ServiceSpec,
    detect_compose_command,
)
from pytest_bluegreen.adapters.engines.docker_api import DockerEngine
from pytest_bluegreen.adapters.routers.haproxy import (
    RELEASES_MAP,
    HAProxyRouter,
    RuntimeAPI,
    read_map_file,
    write_map_file,
    write_releases_map,
)
from pytest_bluegreen.adapters.routers.tls import ensure_certificate, install_certificate
from pytest_bluegreen.checks.probe import check_colour_serves
from pytest_bluegreen.core.colours import COLOURS, Colour
from pytest_bluegreen.core.config import (
    LB_STATE_IN_CONTAINER,
    PORT_SETTINGS,
    StackConfig,
    read_env_file,
)
from pytest_bluegreen.core.errors import (
    BluegreenError,
    CommandTimeout,
    ConfigError,
    PortInUse,
    StackError,
)
from pytest_bluegreen.core.ports import ContainerState, Router
from pytest_bluegreen.reporting.secrets import is_secret_name

Progress = Callable[[str], None]

# Always generated into a new env file: the router's stats password.
ROUTER_SECRETS: Final = ("STATS_PASSWORD",)
HAPROXY_CONFIG_IN_CONTAINER: Final = "/usr/local/etc/haproxy/haproxy.cfg"
# A revive asks HAProxy's runtime API this often, and the preview again after a wrong answer:
# each wait is time users spend on the colour that failed (a show stat costs HAProxy little;
# the preview's requests, a TLS connection each, a little more).
REVIVE_POLL_S: Final = 0.02
PREVIEW_RETRY_S: Final = 0.05
CONTAINER_POLL_S: Final = 0.5  # Docker, for a container that exited meanwhile
REVIVE_SERVING_TIMEOUT_S: Final = 30.0
PREVIEW_PARALLEL: Final = 8  # critical paths asked at once on the preview


def generated_secrets(example: Path) -> list[str]:
    """The keys a new env file gets random values for: the example's secret-looking ones."""
    names = [key for key in read_env_file(example) if is_secret_name(key)]
    return [*names, *(key for key in ROUTER_SECRETS if key not in names)]


def ensure_env_file(path: Path, example: Path, environ: dict[str, str]) -> bool:
    """Write ``path`` from ``example`` with fresh random secrets, unless it exists.

    Secret-looking keys (PASSWORD, SECRET, TOKEN, _KEY...) get random values; values set in
    ``environ`` (for example ``BASE_IMAGE``) win over the example's. Returns True when it
    wrote the file.
    """
    if path.exists():
        return False
    lines = example.read_text(encoding="utf-8").splitlines() if example.is_file() else []
    generated = generated_secrets(example)
    out: list[str] = []
    for line in lines:
        key, sep, _ = line.partition("=")
        key = key.strip()
        if sep and not key.startswith("#"):
            if key in generated:
                line = f"{key}={secrets.token_urlsafe(48)}"
            elif key in environ:
                line = f"{key}={environ[key]}"
        out.append(line)
    present = {line.partition("=")[0].strip() for line in out}
    out += [f"{key}={secrets.token_urlsafe(24)}" for key in generated if key not in present]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(out) + "\n")
    return True


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


def certificate_hosts(hosts: Iterable[str]) -> tuple[list[str], list[str]]:
    """The names and the IP addresses (a swarm node's) a certificate must cover, loopback too."""
    names: list[str] = []
    addresses: list[str] = ["127.0.0.1", "::1"]
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            names += [host] if host not in names else []
        else:
            addresses += [host] if host not in addresses else []
    return names, addresses


def repository(image: str) -> str:
    """``registry:5000/team/app:r42`` -> ``registry:5000/team/app``."""
    head, _, last = image.rpartition("/")
    name = last.partition("@")[0].partition(":")[0]
    return f"{head}/{name}" if head else name


def router_for(config: StackConfig) -> Router:
    """The stack's router: HAProxy's admin socket here, or every replica's API on a swarm."""
    if config.swarm:
        from pytest_bluegreen.adapters.engines.swarm import swarm_router

        return swarm_router(config)
    return HAProxyRouter(
        api=RuntimeAPI(config.admin_socket),
        map_file=config.map_file,
        map_in_container=f"{LB_STATE_IN_CONTAINER}/{config.map_file.name}",
        backends_of=config.backends_of,
    )


class Stack:
    """One blue-green Compose project, with its Docker engine and HAProxy router."""

    def __init__(
        self,
        config: StackConfig,
        progress: Progress = lambda message: None,
        engine: DockerEngine | None = None,
        compose_command: tuple[str, ...] | None = None,
    ) -> None:
        self.config = config
        self.progress = progress
        self.engine = engine or DockerEngine()
        self._compose_command = compose_command or detect_compose_command()
        # Set by a deploy: BLUE_RELEASE/GREEN_RELEASE as recorded, over the environment's.
        self.release_env: dict[str, str] = {}
        self._services: dict[str, ServiceSpec] | None = None  # as Compose resolves them

    def read_services(self) -> list[str]:
        """The services as Compose resolves the files (which validates them), kept for later."""
        self._services = self.compose.services()
        return list(self._services)

    def _specs(self) -> dict[str, ServiceSpec]:
        if self._services is None:
            self.read_services()
        assert self._services is not None
        return self._services

    @property
    def compose(self) -> Compose:
        """Built per use: the environment follows the env file, which prepare() may write."""
        return self._compose({**self.config.environment, **self.release_env})

    def _compose(self, env: dict[str, str]) -> Compose:
        return Compose(
            command=self._compose_command,
            files=self.config.compose_files,
            project_name=self.config.project_name,
            project_dir=self.config.project_dir,
            env=env,
        )

    @property
    def router(self) -> Router:
        return router_for(self.config)

    def prepare(self, live: Colour = "blue") -> None:
        """Make the env file, certificate and map file the stack needs; keep existing ones."""
        cfg = self.config
        if ensure_env_file(cfg.env_file, cfg.project_dir / ".env.example", dict(cfg.env)):
            self.progress(f"wrote {cfg.env_file} with new random secrets")
        cfg.lb_state_dir.mkdir(parents=True, exist_ok=True)
        cfg.tls_dir.mkdir(parents=True, exist_ok=True)  # mounted by the router, even empty
        if self._prepare_tls():
            self.progress(f"wrote HAProxy's certificate {cfg.site_pem} ({cfg.tls} TLS)")
            if self.running_services([cfg.loadbalancer_service]):
                self.progress("warning: the running loadbalancer serves the old certificate")
        if read_map_file(cfg.map_file) is None:
            write_map_file(cfg.map_file, live)
        releases = cfg.map_file.with_name(RELEASES_MAP)
        if not releases.exists():  # a configuration that reads it refuses to start without it
            write_releases_map(releases, {})

    def _prepare_tls(self) -> bool:
        """HAProxy's certificate as the ``tls`` setting says; True when it wrote one."""
        cfg = self.config
        if cfg.tls == "self-signed":
            names, addresses = certificate_hosts((cfg.public_host, cfg.preview_host, "localhost"))
            return ensure_certificate(cfg.site_pem, names, addresses)
        if cfg.tls == "files":
            cert, key = cfg.tls_cert_file, cfg.tls_key_file
            if cert is None or key is None:
                raise ConfigError("bluegreen.tls = 'files' needs tls_cert_file and tls_key_file")
            return install_certificate(cfg.site_pem, cert, key)
        return False  # off: TLS ends upstream

    def shared_services(self, specs: dict[str, ServiceSpec] | None = None) -> list[str]:
        """The services both colours share (database, loadbalancer): none of a profile."""
        specs = self._specs() if specs is None else specs
        colours = {s for c in COLOURS for s in self.config.release_services_of(c)}
        return [name for name, spec in specs.items() if name not in colours and not spec.profiles]

    def build_missing_shared(self) -> list[str]:
        """Build the shared services' images that this engine lacks (see build_missing)."""
        specs = self._specs()
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
        for name, spec in (self._specs() if specs is None else specs).items():
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

    def prune_release_images(
        self, keep: int, protect: Iterable[str], specs: dict[str, ServiceSpec] | None = None
    ) -> list[str]:
        """Remove all but the ``keep`` newest tags of each colour service's image repository.

        Tags in ``protect`` (the live and the previous colour's releases) always stay, and so
        does an image a container still uses. Returns the references removed.
        """
        protected = set(protect)
        names = {s for c in COLOURS for s in self.config.release_services_of(c)}
        specs = self._specs() if specs is None else specs
        repos = sorted({repository(spec.image) for n, spec in specs.items() if n in names})
        removed = []
        for repo in repos:
            for tag, _ in self.engine.image_tags(repo)[keep:]:
                if tag not in protected and self.engine.remove_image(f"{repo}:{tag}") is None:
                    removed.append(f"{repo}:{tag}")
        return removed

    def check_haproxy_config(self) -> None:
        """Run ``haproxy -c`` in a throwaway loadbalancer container: bad configs never start."""
        lb = self.config.loadbalancer_service
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
        colour_services = [s for c in colours for s in cfg.release_services_of(c)]
        database = [cfg.db_service] if cfg.has_database else []
        services = [*database, *colour_services, cfg.loadbalancer_service]
        self.progress(f"building {', '.join(services)}")
        self._build(services)
        running_before = set(self.running_services(services))
        try:
            self.check_haproxy_config()
            self.start([*database, *self._absent_shared(database)])
            if colours and cfg.has_migrations:
                self.migrate(colours[0])
            self.start(colour_services)
            self.start([cfg.loadbalancer_service])
            for colour in colours:
                self.router.wait_ready(colour, timeout_s=60)
        except BluegreenError:
            self._remove_started(services, running_before)
            raise
        self.progress(f"stack healthy in {time.monotonic() - start:.1f}s")

    def _absent_shared(self, own: Sequence[str]) -> list[str]:
        """Shared services (a cache, a queue) other than ``own`` and the router, not running."""
        lb = self.config.loadbalancer_service
        shared = [s for s in self.shared_services() if s not in own and s != lb]
        return [s for s in shared if not self.running_services([s])]

    def start_router(self, colour: Colour) -> None:
        """Start the loadbalancer with ``colour`` live: its configuration checked first."""
        self.check_haproxy_config()
        write_map_file(self.config.map_file, colour)
        self.start([self.config.loadbalancer_service])

    def build(self, services: Sequence[str]) -> None:
        self._build(services)

    def _build(self, services: Sequence[str]) -> None:
        """Build, bounded by ``build_timeout_s``."""
        try:
            self.compose.build(services, timeout=self.config.build_timeout_s)
        except CommandTimeout as exc:
            raise CommandTimeout(
                f"{exc} (build_timeout_s: {self.config.build_timeout_s:g}s)"
            ) from None

    def recreate(self, services: Sequence[str]) -> None:
        """Start ``services`` in new containers (a new release), not waiting for health."""
        self.compose.up(services, force_recreate=True)

    def container_state(self, container_id: str) -> ContainerState:
        return self.engine.state(container_id)

    def logs(self, container_id: str, tail: int = 50) -> str:
        return self.engine.logs(container_id, tail=tail)

    def schedule_retire(self, colour: Colour, delay_s: float) -> None:
        """Stop ``colour`` in ``delay_s`` from a detached ``bluegreen retire``, unless live again.

        ``setsid --fork`` detaches it (new session, reparented to init) and returns at once, so
        no child of the deploy outlives it.
        """
        cfg = self.config
        argv = [sys.executable, "-m", "pytest_bluegreen", "--project-dir", str(cfg.project_dir)]
        argv += ["--project-name", cfg.project_name]
        if cfg.config_file is not None:
            argv += ["--config", str(cfg.config_file)]
        for path in cfg.compose_files:
            argv += ["-f", str(path)]
        argv += ["retire", colour, "--after", str(delay_s)]
        with open(cfg.state_dir / "retire.log", "ab") as log:
            subprocess.run(
                ["setsid", "--fork", *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **cfg.env},
                check=True,
                timeout=30,
            )

    def start(self, services: Sequence[str]) -> None:
        self.progress(f"starting {', '.join(services)}")
        self.compose.up(services)
        self.wait_healthy(services, self.config.healthy_timeout_s)

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
        services = list(cfg.release_services_of(colour))
        stopped = self._stopped_containers(services)
        if not stopped and not self.router.not_ready(colour):
            return
        if stopped:
            self.progress(f"starting the retired {colour} colour ({', '.join(stopped)})")
            self._start_stopped(stopped)
        self._wait_up(colour, services, cfg.healthy_timeout_s)
        self.progress(f"{colour} is UP in HAProxy")
        self._wait_serving(colour, timeout_s=REVIVE_SERVING_TIMEOUT_S)
        self.progress(f"{colour} answers on its preview")
        workers = list(cfg.workers_of(colour))
        if workers:
            self.wait_healthy(workers, cfg.healthy_timeout_s)

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
        deadline = time.monotonic() + timeout_s
        next_look = time.monotonic()
        while down := self.router.not_ready(colour):
            now = time.monotonic()
            if now >= next_look:
                self._raise_if_failed(services)
                next_look = now + CONTAINER_POLL_S
            if now >= deadline:
                listing = ", ".join(f"{s.backend}/{s.server} {s.status}" for s in down)
                raise StackError(f"{colour} is not UP in HAProxy after {timeout_s:.0f}s: {listing}")
            time.sleep(REVIVE_POLL_S)

    def _raise_if_failed(self, services: Sequence[str]) -> None:
        for service in services:
            for container_id in self.container_ids(service):
                state = self.engine.state(container_id)
                if state.failed:
                    logs = self.engine.logs(state.id)
                    raise StackError(f"{service} is {state.describe()}; its last logs:\n{logs}")

    def _wait_serving(self, colour: Colour, timeout_s: float) -> None:
        """Wait (bounded) until ``colour``'s preview has answered every critical path from it.

        The paths are asked side by side, and one that answered is not asked again: the wait
        is the slowest path's, not the sum of all (a just-started app's first answers are its
        slowest).
        """
        cfg = self.config
        url = cfg.preview_url(colour)

        def problems_of(path: str) -> list[str]:
            return check_colour_serves(
                url, [path], colour, cfg.ca_file, expected_status=cfg.expected_status
            )

        deadline = time.monotonic() + timeout_s
        pending = list(cfg.critical_paths)
        if not pending:
            return
        with ThreadPoolExecutor(max_workers=min(len(pending), PREVIEW_PARALLEL)) as pool:
            while True:
                answers = list(pool.map(problems_of, pending))
                problems = [problem for found in answers for problem in found]
                pending = [path for path, found in zip(pending, answers, strict=True) if found]
                if not pending:
                    return
                if time.monotonic() >= deadline:
                    raise StackError(
                        f"{colour} does not serve after {timeout_s:.0f}s: {'; '.join(problems)}"
                    )
                time.sleep(PREVIEW_RETRY_S)

    def migrate(self, colour: Colour, *, seed: bool = True) -> None:
        """Apply the schema (and the seed data) with ``colour``'s image."""
        cfg = self.config
        if not cfg.migrate_command:
            return
        service = cfg.migrate_service_of(colour)
        self.progress(f"migrating the database with {service}")
        commands = [cfg.migrate_command, *([cfg.seed_command] if seed and cfg.seed_command else [])]
        for command in commands:
            try:
                self.compose.run_once(service, command, timeout=cfg.command_timeout_s)
            except CommandTimeout as exc:
                raise CommandTimeout(
                    f"{exc}; its container was removed (command_timeout_s: "
                    f"{cfg.command_timeout_s:g}s)"
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
                failed = [s for s in states if s.failed]
                if failed:
                    logs = self.engine.logs(failed[0].id)
                    raise StackError(f"{service} is {failed[0].describe()}; its last logs:\n{logs}")
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
        self._compose({**placeholders, **self.config.environment}).down(volumes=volumes)

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
