"""Migration rehearsal: the new release's migrations on a copy of the database, first.

Migrations without downtime (expand, then contract) hold only while the colour that is still
live can work on the schema the new release migrates to. The rehearsal proves it before the
real database changes: the pre-deploy backup is restored into a scratch database, the new
release's migrations run there, and the live colour's own image is started on that copy, where
it must still answer. The real database is migrated only after that gate passed.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import requests

from pytest_bluegreen.adapters.docker_engine import EXEC_TIMED_OUT, DockerEngine
from pytest_bluegreen.adapters.postgres import DatabaseBackup
from pytest_bluegreen.adapters.stack import Stack
from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.errors import BluegreenError, DeployError

SCRATCH_SUFFIX: Final = "_rehearsal"
START_TIMEOUT_S: Final = 60.0
# "django.db.utils.ProgrammingError: column x does not exist", on a line of its own.
ERROR_LINE: Final = re.compile(
    r"^\s*(?P<kind>[A-Za-z_][\w.]*(?:Error|Exception)): (?P<message>.+?)\"?\s*$", re.MULTILINE
)
TOOLS_LIFETIME_S: Final = 1800  # the tools container ends itself if a killed deploy leaves it


def pending_lines(output: str) -> list[str]:
    """The pending migrations a ``migration_pending_command`` printed: one per non-empty line."""
    return [line.strip() for line in output.splitlines() if line.strip()]


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
    database: DatabaseBackup

    def query(self, sql: str) -> list[tuple[str, ...]]:
        """Rows of ``sql``, every value as text."""
        return self.database.query(self.name, sql)


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
    """One rehearsal: a scratch copy of the database, migrated by the release being deployed."""

    def __init__(
        self,
        stack: Stack,
        database: DatabaseBackup,
        dump: Path,
        new_colour: Colour,
        live_colour: Colour | None,
    ) -> None:
        self.stack = stack
        self.database = database
        self.dump = dump
        self.new_colour = new_colour
        self.live_colour = live_colour
        self.scratch = database.database + SCRATCH_SUFFIX
        self.applied: list[str] | None = None  # None until migrate() ran
        self._tools: str | None = None  # the new release's container the commands run in
        self.seconds: dict[str, float] = {}

    @property
    def _config_env(self) -> dict[str, str]:
        """What points a one-off container of the app at the scratch database."""
        return {"POSTGRES_DB": self.scratch}

    def _service(self, colour: Colour) -> str:
        return self.stack.config.migrate_service_of(colour)

    def prepare(self) -> None:
        """The pre-deploy backup, restored into the scratch database (replacing an old one)."""
        start = time.monotonic()
        self.database.restore(self.dump, self.scratch, replace=True)
        self.seconds["restore"] = time.monotonic() - start

    def scratch_database(self) -> ScratchDatabase:
        return ScratchDatabase(self.scratch, self.database)

    def summary(self) -> dict[str, object]:
        """For the deploy record: the scratch copy, what was applied, how long each step took."""
        return {
            "scratch_database": self.scratch,
            "applied": self.applied,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }

    def run(self, command: tuple[str, ...]) -> str:
        """A command of the new release's image, on the scratch database.

        The commands share one idle container of the new release: a ``docker exec`` costs a
        fraction of a ``compose run``.
        """
        engine = self.stack.engine
        if self._tools is None:
            name = f"{self.stack.config.project_name}-rehearsal-tools"
            engine.remove(name)  # left by a killed deploy
            sleep = ("sleep", str(TOOLS_LIFETIME_S))
            service = self._service(self.new_colour)
            self.stack.compose.run_detached(service, name, self._config_env, sleep)
            self._tools = name
        bound = self.stack.config.command_timeout_s
        exit_code, output = engine.exec(self._tools, list(command), timeout_s=math.ceil(bound))
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
        command = self.stack.config.migration_pending_command
        return pending_lines(self.run(command)) if command else []

    def check_models(self) -> None:
        """The new release's models match its migrations, and its migrations do not conflict."""
        if self.stack.config.migration_check_command:
            self.run(self.stack.config.migration_check_command)

    def migrate(self) -> list[str]:
        """Apply the new release's migrations to the scratch copy, once; returns their names."""
        if self.applied is None:
            start = time.monotonic()
            pending = self.pending()
            self.run(self.stack.config.migrate_command)
            self.applied = pending
            self.seconds["migrate"] = time.monotonic() - start
        return self.applied

    @contextmanager
    def live_colour_on_copy(self) -> Iterator[LiveColourOnCopy]:
        """The live colour's image, serving from the migrated copy, until the block ends."""
        if self.live_colour is None:
            raise DeployError("there is no live colour to rehearse with (first deploy)")
        config = self.stack.config
        service = self._service(self.live_colour)
        name = f"{config.project_name}-rehearsal-{self.live_colour}"
        engine = self.stack.engine
        engine.remove(name)  # left by a killed deploy
        start = time.monotonic()
        self.stack.compose.run_detached(service, name, self._config_env)
        try:
            url = f"http://{engine.reachable_ip(name)}:{config.rehearsal_port}"
            self._wait_answering(name, url, service)
            self.seconds["live_colour_start"] = time.monotonic() - start
            yield LiveColourOnCopy(self.live_colour, url, service, name, engine)
        finally:
            engine.remove(name)

    def _wait_answering(self, name: str, url: str, host: str) -> None:
        """Until the one-off server accepts connections (bounded; its logs if it dies)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        path = self.stack.config.paths_on_copy[0]
        with requests.Session() as session:
            session.trust_env = False
            while True:
                try:
                    session.get(url + path, headers={"Host": host}, timeout=2)
                    return
                except requests.RequestException:
                    pass
                state = self.stack.engine.state(name)
                if state.status != "running" or time.monotonic() >= deadline:
                    logs = self.stack.engine.logs(name)
                    raise DeployError(
                        f"the live colour ({self.live_colour}) did not start on the migrated "
                        f"copy ({state.describe()}); its last logs:\n{logs}"
                    )
                time.sleep(0.3)

    def drop(self) -> None:
        """Remove the scratch database and the tools container (best effort)."""
        if self._tools is not None:
            with contextlib.suppress(BluegreenError):
                self.stack.engine.remove(self._tools)
        with contextlib.suppress(BluegreenError):
            self.database.drop_database(self.scratch)
