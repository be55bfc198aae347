"""The adapters of a stack on one Docker host: Compose, HAProxy, PostgreSQL and Locust together.

This is what :class:`pytest_bluegreen.core.ports.Adapters` is today; another engine (Swarm) is
another module with the same shape, and the deployment does not know which one it has.
"""

from __future__ import annotations

from pathlib import Path

from pytest_bluegreen.adapters.databases import DatabaseAdapter, open_database
from pytest_bluegreen.adapters.databases.rehearsal import MigrationRehearsal
from pytest_bluegreen.adapters.engines.compose import Progress, Stack, router_for
from pytest_bluegreen.adapters.load.locust_runner import LoadRun
from pytest_bluegreen.checks.probe import check_colour_serves
from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.errors import DeployError
from pytest_bluegreen.core.ports import Router


class ComposeHost:
    """Everything a deploy acts on; the Docker-backed parts open only when first asked for."""

    def __init__(self, config: StackConfig, progress: Progress = lambda message: None) -> None:
        self.config = config
        self.progress = progress
        self.router: Router = router_for(config)  # the admin socket only, no Docker
        self._stack: Stack | None = None

    def open_stack(self) -> Stack:
        """The Compose stack: fails with one clear line when Docker or Compose is missing."""
        if self._stack is None:
            self._stack = Stack(self.config, progress=self.progress)
        return self._stack

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            raise DeployError("the prerequisites stage has not run")
        return self._stack

    def database(self) -> DatabaseAdapter:
        """The database service's database (started when it is not running)."""
        db = self.config.db_service
        if not self.stack.running_services([db]):
            self.stack.start([db])
        (container_id,) = self.stack.container_ids(db)
        return open_database(self.config, container_id)

    def rehearsal(self, dump: Path, new: Colour, live: Colour | None) -> MigrationRehearsal:
        """A scratch server of its own, on a private network: the live database is not touched."""
        return MigrationRehearsal(self.stack, dump, new, live)

    def load(self, max_seconds: float) -> LoadRun:
        """Locust on the public URL, as many users as the settings say; it stops by itself."""
        cfg = self.config
        return LoadRun(
            cfg.public_url,
            cfg.state_dir / "load",
            cfg.ca_file,
            users=cfg.load_users,
            user_rps=cfg.load_user_rps,
            paths=cfg.load_paths,
            max_seconds=max_seconds,
        )

    def colour_serves(self, colour: Colour) -> list[str]:
        """What is wrong with the public URL's critical paths; [] when ``colour`` serves them."""
        cfg = self.config
        return check_colour_serves(
            cfg.public_url,
            cfg.critical_paths,
            colour,
            cfg.ca_file,
            expected_status=cfg.expected_status,
        )
