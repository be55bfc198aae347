"""Migration rehearsal: the new release's migrations on a copy of the database, first.

Migrations without downtime (expand, then contract) hold only while the colour that is still
live can work on the schema the new release migrates to. The rehearsal proves it before the
real database changes: the pre-deploy backup is restored into a scratch database server, the
new release's migrations run there, and the live colour's own image is started on that copy,
where it must still answer. The real database is migrated only after that gate passed.

Isolated by construction, not by configuration: the scratch server is a container of the
database service's own image and environment, on a private network of its own
(``<project>-rehearsal``, internal) where it answers to the database service's name. The
rehearsal's app containers are attached to that network only, so whatever variable the app
reads its database from (``DATABASE_URL``, ``POSTGRES_HOST``...), the name it finds is the
scratch server's, and the live database is not reachable from there at all. The backup is
restored under the live database's own name, so the app's settings need no change either.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import requests

from pytest_bluegreen.adapters.databases import DEFAULT_PORTS, DatabaseAdapter, open_database
from pytest_bluegreen.adapters.engines.compose_cli import ServiceSpec
from pytest_bluegreen.adapters.engines.docker_api import EXEC_TIMED_OUT, DockerEngine
from pytest_bluegreen.adapters.engines.docker_run import LABEL, DockerCLI
from pytest_bluegreen.adapters.engines.project import Project
from pytest_bluegreen.core.colours import COLOURS, Colour
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.errors import BluegreenError, DeployError

START_TIMEOUT_S: Final = 60.0
READY_PROBE_TIMEOUT_S: Final = 30.0  # one run of the database's healthcheck
# "django.db.utils.ProgrammingError: column x does not exist", on a line of its own.
ERROR_LINE: Final = re.compile(
    r"^\s*(?P<kind>[A-Za-z_][\w.]*(?:Error|Exception)): (?P<message>.+?)\"?\s*$", re.MULTILINE
)
TOOLS_LIFETIME_S: Final = 1800  # the tools container ends itself if a killed deploy leaves it
PLACEHOLDERS: Final = ("host", "port", "database", "user")

OpenDatabase = Callable[[StackConfig, str], DatabaseAdapter]


def pending_lines(output: str) -> list[str]:
    """The pending migrations a ``migration_pending_command`` printed: one per non-empty line."""
    return [line.strip() for line in output.splitlines() if line.strip()]


def rehearsal_env(template: Mapping[str, str], values: Mapping[str, str]) -> dict[str, str]:
    """``rehearsal_env`` with ``{host}``, ``{port}``, ``{database}`` and ``{user}`` filled in.

    Only those four: any other brace (a JSON value, a shell ``${VAR}``) stays as it is.
    """
    filled = {}
    for name, value in template.items():
        for key in PLACEHOLDERS:
            value = value.replace("{" + key + "}", values.get(key, ""))
        filled[name] = value
    return filled


@dataclass(frozen=True, slots=True)
class RehearsalNames:
    """Every Docker object of one project's rehearsal, named so a killed deploy's are found."""

    project: str

    @property
    def network(self) -> str:
        return f"{self.project}-rehearsal"

    @property
    def server(self) -> str:
        return f"{self.project}-rehearsal-db"

    @property
    def tools(self) -> str:
        return f"{self.project}-rehearsal-tools"

    def live(self, colour: Colour) -> str:
        return f"{self.project}-rehearsal-{colour}"

    @property
    def containers(self) -> tuple[str, ...]:
        """App containers first, the server last (they would only lose their database)."""
        return (self.tools, *(self.live(c) for c in COLOURS), self.server)


@dataclass(frozen=True, slots=True)
class LiveColourOnCopy:
    """The live colour's image, started on the migrated copy, reachable from this host."""

    colour: Colour
    url: str
    host: str  # the Host header it accepts: its Compose service name
    container: str
    engine: DockerEngine

    @property
    def headers(self) -> dict[str, str]:
        """What HAProxy would send: its service name as Host, and that TLS ended in front."""
        return {"Host": self.host, "X-Forwarded-Proto": "https"}

    def errors(self) -> list[str]:
        """The distinct errors in its log, e.g. "ProgrammingError: column ... does not exist"."""
        return error_lines(self.engine.logs(self.container, tail=200))


@dataclass(frozen=True, slots=True)
class ScratchDatabase:
    """The rehearsal's migrated copy, for users' own gates: ``query("SELECT ...")``."""

    name: str
    database: DatabaseAdapter

    def query(self, sql: str) -> list[tuple[str, ...]]:
        """Rows of ``sql``, every value as text."""
        return self.database.query(self.name, sql)


def remote_engine(environ: Mapping[str, str]) -> str | None:
    """The Docker engine's address when it is another host's (``DOCKER_HOST``), else None.

    A container's address on a private network is reachable only from the engine's own host.
    """
    host = environ.get("DOCKER_HOST", "")
    if host.startswith("ssh://"):
        return host
    if host.startswith("tcp://"):
        name = host[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
        return None if name in ("localhost", "127.0.0.1", "::1") else host
    return None


def error_lines(logs: str, limit: int = 5) -> list[str]:
    """Distinct ``SomethingError: message`` lines of a log, JSON-escaped tracebacks included."""
    found: list[str] = []
    unescaped = logs.replace("\\n", "\n").replace('\\"', '"')  # tracebacks in JSON log lines
    for match in ERROR_LINE.finditer(unescaped):
        line = f"{match['kind']}: {match['message'].strip()}"[:300]
        if line not in found:
            found.append(line)
    return found[:limit]


class MigrationRehearsal:
    """One rehearsal: a scratch server with a copy of the database, migrated by the new release.

    :meth:`prepare` makes the copy; :meth:`drop` removes every container, the network and the
    scratch server, those a killed deploy left included.
    """

    def __init__(
        self,
        project: Project,
        dump: Path,
        new_colour: Colour,
        live_colour: Colour | None,
        *,
        docker: DockerCLI | None = None,
        open_db: OpenDatabase | None = None,
    ) -> None:
        self.project = project  # the stack's files and engine, whichever engine runs it
        self.config = project.config
        self.dump = dump
        self.new_colour = new_colour
        self.live_colour = live_colour
        self.names = RehearsalNames(self.config.project_name)
        self.scratch = self.names.server  # the scratch database server's container
        self.applied: list[str] | None = None  # None until migrate() ran
        self.seconds: dict[str, float] = {}
        self.docker = docker or DockerCLI(timeout_s=self.config.engine.command_timeout_s)
        self._open_db = open_db or _open_scratch
        self._labels = {LABEL: self.config.project_name}
        self._specs: dict[str, ServiceSpec] | None = None
        self._database: DatabaseAdapter | None = None
        self._tools: str | None = None  # the new release's container the commands run in

    # -- the scratch server --------------------------------------------------------------------

    @property
    def database_name(self) -> str:
        """The copy's name: the live database's own, so the app's settings fit it as they are."""
        return self.config.database_name_value()

    def prepare(self) -> None:
        """The private network, the scratch server on it, and the pre-deploy backup restored.

        A failure on the way removes whatever it started.
        """
        start = time.monotonic()
        self._remove_all(warn=False)  # left by a killed deploy
        try:
            spec = self._spec(self.config.database.service)
            self.docker.create_network(self.names.network, self._labels)
            self.docker.run(
                spec,
                self.names.server,
                spec.environment,
                network=self.names.network,
                alias=self.config.database.service,
                labels=self._labels,
            )
            database = self._open_db(self.config, self.names.server)
            self._wait_ready(spec, database)
            ready = time.monotonic()
            self.seconds["server"] = ready - start
            database.restore(self.dump, self.database_name, replace=True)
            self._database = database
            self.seconds["restore"] = time.monotonic() - ready
        except BaseException:
            self._remove_all(warn=True)
            raise

    def _spec(self, service: str) -> ServiceSpec:
        """A service as Compose resolves it now (each colour at its recorded release)."""
        if self._specs is None:
            self._specs = self.project.compose.services()
        spec = self._specs.get(service)
        if spec is None:
            raise DeployError(f"the Compose files have no service {service!r} to rehearse with")
        return spec

    def _wait_ready(self, spec: ServiceSpec, database: DatabaseAdapter) -> None:
        """Until the server's own healthcheck passes in it (bounded by healthy_timeout_s).

        Without a Compose healthcheck: the image's, as Docker reports it, else a query (a
        "commands" database cannot be queried: running is all that is known of it then).
        """
        name = self.names.server
        probe = spec.healthcheck_argv()
        timeout = self.config.engine.healthy_timeout_s
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            state = self.project.engine.state(name)
            if state.status != "running":
                raise DeployError(
                    f"the scratch database server ({spec.image}) stopped "
                    f"({state.describe()}); its last logs:\n{self.project.engine.logs(name)}"
                )
            if probe is not None:
                bound = min(READY_PROBE_TIMEOUT_S, max(1.0, deadline - time.monotonic()))
                code, last = self.docker.exec(name, probe, timeout_s=bound)
                if code == 0:
                    return
            elif state.health is not None:
                if state.health == "healthy":
                    return
                last = f"Docker reports it {state.health}"
            elif self.config.database.kind == "commands":
                return
            else:
                try:
                    database.query(self.database_name, "SELECT 1")
                    return
                except BluegreenError as exc:
                    last = str(exc)
            if time.monotonic() >= deadline:
                raise DeployError(
                    f"the scratch database server ({spec.image}) was not ready after "
                    f"{timeout:g}s (engine.healthy_timeout_s); its healthcheck said:\n"
                    f"{last[-2000:]}"
                )
            time.sleep(0.5)

    def scratch_database(self) -> ScratchDatabase:
        if self._database is None:
            raise DeployError("the rehearsal is not prepared: there is no scratch database")
        return ScratchDatabase(self.database_name, self._database)

    def summary(self) -> dict[str, object]:
        """For the deploy record: the scratch copy, what was applied, how long each step took."""
        return {
            "scratch_server": self.names.server,
            "network": self.names.network,
            "applied": self.applied,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }

    # -- the app on the copy -------------------------------------------------------------------

    def _app_env(self, spec: ServiceSpec) -> dict[str, str]:
        """The service's own environment, then ``rehearsal_env`` over it."""
        kind = self.config.database.kind
        values = {
            "host": self.config.database.service,
            "port": DEFAULT_PORTS.get(kind, ""),
            "database": self.database_name,
            "user": self.config.database_user_value(),
        }
        return {**spec.environment, **rehearsal_env(self.config.migrations.rehearsal_env, values)}

    def _start_app(self, service: str, name: str, command: tuple[str, ...] | None) -> None:
        """A container of ``service`` on the private network only (none left of that name)."""
        spec = self._spec(service)
        self.docker.remove(name)
        self.docker.run(
            spec,
            name,
            self._app_env(spec),
            network=self.names.network,
            command=command,
            labels=self._labels,
        )

    def run(self, command: tuple[str, ...]) -> str:
        """A command of the new release's image, on the scratch copy.

        The commands share one idle container of the new release: a ``docker exec`` costs a
        fraction of a container start.
        """
        if self._database is None:
            raise DeployError("the rehearsal is not prepared: there is no scratch database")
        if self._tools is None:
            sleep = ("sleep", str(TOOLS_LIFETIME_S))
            service = self.config.migrate_service_of(self.new_colour)
            self._start_app(service, self.names.tools, sleep)
            self._tools = self.names.tools
        bound = self.config.engine.command_timeout_s
        exit_code, output = self.project.engine.exec(
            self._tools, list(command), timeout_s=math.ceil(bound)
        )
        if exit_code == EXEC_TIMED_OUT:
            raise DeployError(
                f"'{' '.join(command)}' did not finish within {bound:g}s (command_timeout_s)"
            )
        if exit_code != 0:
            tail = "\n".join(output.strip().splitlines()[-30:])
            raise DeployError(f"'{' '.join(command)}' failed (exit {exit_code}):\n{tail}")
        return output

    def pending(self) -> list[str]:
        """Migrations of the new release that the database (as backed up) does not have yet."""
        command = self.config.migrations.pending_command
        return pending_lines(self.run(command)) if command else []

    def check_models(self) -> bool:
        """The new release's models match its migrations: ``migration_check_command`` passes.

        False when the settings have no such command (nothing was checked).
        """
        if not self.config.migrations.check_command:
            return False
        self.run(self.config.migrations.check_command)
        return True

    def migrate(self) -> list[str]:
        """Apply the new release's migrations to the scratch copy, once; returns their names."""
        if self.applied is None:
            start = time.monotonic()
            pending = self.pending()
            self.run(self.config.migrations.command)
            self.applied = pending
            self.seconds["migrate"] = time.monotonic() - start
        return self.applied

    @contextmanager
    def live_colour_on_copy(self) -> Iterator[LiveColourOnCopy]:
        """The live colour's image, serving from the migrated copy, until the block ends."""
        if self.live_colour is None:
            raise DeployError("there is no live colour to rehearse with (first deploy)")
        port = self.config.migrations.rehearsal_port
        if not port:
            raise DeployError("rehearsal_port is 0: the live colour's port on the copy is unknown")
        remote = remote_engine(self.config.environment)
        if remote:
            raise DeployError(
                f"the live colour on the copy would run on the engine at {remote}, whose "
                "container networks this host does not reach: run the deploy on that host "
                "(DOCKER_HOST unset), or set rehearsal_port = 0"
            )
        service = self.config.migrate_service_of(self.live_colour)
        name = self.names.live(self.live_colour)
        start = time.monotonic()
        self._start_app(service, name, None)
        try:
            url = f"http://{self.docker.ip_on(name, self.names.network)}:{port}"
            self._wait_answering(name, url, service)
            self.seconds["live_colour_start"] = time.monotonic() - start
            yield LiveColourOnCopy(self.live_colour, url, service, name, self.project.engine)
        finally:
            self._remove(name, warn=True)

    def _wait_answering(self, name: str, url: str, host: str) -> None:
        """Until the one-off server accepts connections (bounded; its logs if it dies)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        path = self.config.paths_on_copy[0]
        with requests.Session() as session:
            session.trust_env = False
            while True:
                try:
                    session.get(url + path, headers={"Host": host}, timeout=2)
                    return
                except requests.RequestException:
                    pass
                state = self.project.engine.state(name)
                if state.status != "running" or time.monotonic() >= deadline:
                    logs = self.project.engine.logs(name)
                    raise DeployError(
                        f"the live colour ({self.live_colour}) did not start on the migrated "
                        f"copy ({state.describe()}); its last logs:\n{logs}"
                    )
                time.sleep(0.3)

    # -- the end -------------------------------------------------------------------------------

    def drop(self) -> None:
        """Remove every container of the rehearsal, the scratch server and the network.

        Never raises: what cannot be removed is said on the deploy's progress lines.
        """
        self._remove_all(warn=True)
        self._tools = None
        self._database = None

    def _remove_all(self, *, warn: bool) -> None:
        for name in self.names.containers:
            self._remove(name, warn=warn)
        try:
            self.docker.remove_network(self.names.network)
        except BluegreenError as exc:
            if warn:
                self.project.progress(f"warning: the rehearsal's network is left: {exc}")

    def _remove(self, name: str, *, warn: bool) -> None:
        try:
            self.docker.remove(name)
        except BluegreenError as exc:
            if warn:
                self.project.progress(f"warning: a container of the rehearsal is left: {exc}")


def _open_scratch(config: StackConfig, container: str) -> DatabaseAdapter:
    """The database adapter of the scratch server, bounded by ``command_timeout_s``."""
    return open_database(config, container, timeout_s=config.engine.command_timeout_s)
