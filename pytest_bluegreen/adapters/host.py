"""Everything a deploy acts on, each part from its registry: the engine, the router, the load.

This is what :class:`pytest_bluegreen.core.ports.Adapters` is: the settings' engine (Compose on
one host, a Swarm stack), the router its engine names, the database in its container, Locust.
The deployment does not know which ones it has.
"""

from __future__ import annotations

from pathlib import Path

from pytest_bluegreen.adapters.databases import DatabaseAdapter, open_database
from pytest_bluegreen.adapters.databases.rehearsal import MigrationRehearsal
from pytest_bluegreen.adapters.engines import Engine, open_engine
from pytest_bluegreen.adapters.load import open_load
from pytest_bluegreen.adapters.routers import MapRouter, router_for
from pytest_bluegreen.checks.probe import check_colour_serves
from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.errors import DeployError
from pytest_bluegreen.core.ports import LoadGenerator, Progress


class StackAdapters:
    """The adapters of one stack; the Docker-backed parts open only when first asked for."""

    def __init__(self, config: StackConfig, progress: Progress = lambda message: None) -> None:
        self.config = config
        self.progress = progress
        self.router: MapRouter = router_for(config)  # no Docker
        self._stack: Engine | None = None

    def open_stack(self) -> Engine:
        """The settings' engine: fails with one clear line when Docker or Compose is missing."""
        if self._stack is None:
            self._stack = open_engine(self.config, self.progress, router=self.router)
        return self._stack

    @property
    def stack(self) -> Engine:
        if self._stack is None:
            raise DeployError("the prerequisites stage has not run")
        return self._stack

    def database(self) -> DatabaseAdapter:
        """The database service's database (started when it is not running)."""
        db = self.config.database.service
        if not self.stack.running_services([db]):
            self.stack.start([db])
        return open_database(self.config, self.stack.database_container(db))

    def rehearsal(self, dump: Path, new: Colour, live: Colour | None) -> MigrationRehearsal:
        """A scratch server of its own, on a private network: the live database is not touched."""
        return MigrationRehearsal(self.stack.project, dump, new, live)

    def load(self, max_seconds: float) -> LoadGenerator:
        """Users' requests on the public URL, as many as the settings say; it stops by itself."""
        return open_load(self.config, max_seconds)

    def colour_serves(self, colour: Colour) -> list[str]:
        """What is wrong with the public URL's critical paths; [] when ``colour`` serves them."""
        cfg = self.config
        return check_colour_serves(
            cfg.public_url,
            cfg.gates.critical_paths,
            colour,
            cfg.ca_file,
            expected_status=cfg.gates.expected_status,
        )
