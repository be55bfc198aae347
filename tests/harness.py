"""The throwaway reference stack that the integration tests, the scenarios and the benches run.

One home for its three parts:

- its settings (:class:`Throwaway`): a Compose project name, a home folder for its state and
  secrets, loopback ports from a base (:func:`ports`), written as TOML;
- its life (:func:`throwaway_stack`, :func:`bring_up`, :func:`short_home`): down from no
  containers and no volumes, up with blue live, down again with its volumes;
- its user (:class:`StackUser`): ``pytest`` with the plugin run as a user runs it, in a process
  of its own, and what the user sees afterwards (the last record, who answers).

Its images are named after the Compose project (``<project>-db:15``...), so every throwaway
project builds its own from the same cached layers; a test session removes them at its end
(:class:`tests.images.ThrowawayImages`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import requests
import tomli_w
import tomllib

from pytest_bluegreen.adapters.databases.postgres import DatabaseBackup
from pytest_bluegreen.adapters.engines.compose import ComposeStack
from pytest_bluegreen.core.colours import Colour, other_colour
from pytest_bluegreen.core.config import StackConfig, as_written, load_config
from pytest_bluegreen.core.record import DeployRecord, RecordStore
from tests.images import ThrowawayImages

REPO: Final = Path(__file__).resolve().parents[1]
BASE_COMPOSE: Final = REPO / "docker-compose.blue-green.yml"
# p99 of a one-second window is noise on a shared 2-core machine (50-150 ms from second to
# second without a switch): throwaway stacks hold the zero-failure budget; the p99 overhead of a
# switch is measured in bench/switch.py.
NOISY_P99: Final[Mapping[str, Any]] = {"load_p99_budget_ms": 2000}


def ports(base: int) -> dict[str, str]:
    """The stack's loopback ports: ``base + 443`` public HTTPS and so on."""
    return {
        "PUBLIC_BIND": "127.0.0.1",
        "PUBLIC_HTTP_PORT": str(base + 80),
        "PUBLIC_HTTPS_PORT": str(base + 443),
        "PREVIEW_BLUE_PORT": str(base + 441),
        "PREVIEW_GREEN_PORT": str(base + 442),
        "STATS_PORT": str(base + 404),
    }


def progress(message: str) -> None:
    """A throwaway stack's progress line, on stderr."""
    print(f"[stack] {message}", file=sys.stderr, flush=True)


def reference_settings() -> dict[str, Any]:
    """The reference stack's settings, as this repository's pyproject.toml gives them."""
    with open(REPO / "pyproject.toml", "rb") as handle:
        table: dict[str, Any] = tomllib.load(handle)["tool"]["bluegreen"]
    return table


def merged(*tables: Mapping[str, Any]) -> dict[str, Any]:
    """Settings tables, each over the ones before it, key by key whichever spelling (flat or
    sectioned) each uses; in the sectioned one."""
    dotted: dict[str, Any] = {}
    for table in tables:
        dotted |= as_written(table)
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        section, _, name = key.rpartition(".")
        (nested.setdefault(section, {}) if section else nested)[name] = value
    return nested


def write_settings(path: Path, table: Mapping[str, Any]) -> Path:
    """``table`` as a TOML settings file at ``path``."""
    path.write_text(tomli_w.dumps(dict(table)), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Throwaway:
    """Settings of a throwaway stack: Compose project ``project``, state and secrets in ``home``.

    ``ports`` (see :func:`ports`) are given to the stack as environment variables; none: the
    stack's own defaults. ``compose`` files come after the reference stack's own; ``settings``
    adds keys (budgets, webhooks).
    """

    project: str
    home: Path
    ports: Mapping[str, str] = field(default_factory=dict)
    env_file: str = "test.env"
    compose: Sequence[Path] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def settings_file(self) -> Path:
        return self.home / "bluegreen.toml"

    @property
    def environ(self) -> dict[str, str]:
        """This process's environment with the stack's ports."""
        return {**os.environ, **self.ports}

    def table(self) -> dict[str, Any]:
        """The reference stack's own settings, in this throwaway's project and folders."""
        own = {
            "project_name": self.project,
            "state_dir": str(self.home / "state"),
            "env_file": str(self.home / self.env_file),
            "compose_files": [str(path) for path in (BASE_COMPOSE, *self.compose)],
        }
        return merged(reference_settings(), own, self.settings)

    def write(self) -> Path:
        """Write the settings file; its path."""
        return write_settings(self.settings_file, self.table())

    def config(self) -> StackConfig:
        """The settings written and read back as the plugin reads them."""
        return load_config(REPO, self.write(), environ=self.environ)

    def stack(self, progress: Callable[[str], None] = progress) -> ComposeStack:
        return ComposeStack(self.config(), progress=progress)


@contextlib.contextmanager
def short_home(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A fresh folder with a short path, removed afterwards unless ``keep``.

    Short: HAProxy's admin socket path in it must stay under about 100 bytes.
    """
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield home
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def throwaway_stack(
    throwaway: Throwaway,
    *,
    images: ThrowawayImages | None = None,
    fresh: bool = True,
    keep: bool = False,
    progress: Callable[[str], None] = progress,
) -> Iterator[ComposeStack]:
    """The stack of ``throwaway``, taken down with its volumes afterwards unless ``keep``.

    ``fresh``: first taken down with its volumes too (a killed run's leftovers of the same
    project name), so that it starts from no containers and no volumes. ``images``: the test
    session's register, which removes the images this project builds at the session's end.
    """
    if images is not None:
        images.add(throwaway.project)
    stack = throwaway.stack(progress)
    try:
        if fresh:
            stack.down(volumes=True)
        yield stack
    finally:
        if not keep:
            stack.down(volumes=True)


def bring_up(stack: ComposeStack) -> float:
    """Both colours up and healthy, blue live; the seconds it took."""
    start = time.monotonic()
    stack.up(("blue", "green"), live="blue")
    return time.monotonic() - start


@dataclass
class StackUser:
    """A throwaway stack's user: ``pytest`` with the plugin, and what the user sees afterwards."""

    throwaway: Throwaway
    stack: ComposeStack

    @property
    def home(self) -> Path:
        return self.throwaway.home

    @property
    def config(self) -> StackConfig:
        return self.stack.config

    @property
    def settings(self) -> Path:
        return self.throwaway.settings_file

    def settings_with(self, name: str, extra: str) -> Path:
        """These settings plus ``extra`` (TOML lines), in a file of their own."""
        table = merged(self.throwaway.table(), tomllib.loads(extra))
        return write_settings(self.home / f"{name}.toml", table)

    def argv(
        self, *args: str, compose: list[Path] | None = None, settings: Path | None = None
    ) -> list[str]:
        """``pytest`` with the plugin on this stack; ``compose`` files after the base one."""
        # The "--opt=value" form: pytest finds its rootdir before it knows plugin options, and
        # would take a separate value for a path to test.
        argv = [sys.executable, "-m", "pytest", f"--rootdir={REPO}"]
        argv += [f"--bg-config={settings or self.settings}", "-p", "no:cacheprovider"]
        for path in [BASE_COMPOSE, *compose] if compose else []:
            argv += [f"--bg-compose-file={path}"]
        return [*argv, *args]

    def run(
        self,
        *args: str,
        compose: list[Path] | None = None,
        settings: Path | None = None,
        timeout_s: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run pytest as a user would, in the repository, to its end; its output apart."""
        return subprocess.run(
            self.argv(*args, compose=compose, settings=settings),
            cwd=REPO,
            env=self.throwaway.environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def start(
        self, *args: str, compose: list[Path] | None = None, settings: Path | None = None
    ) -> subprocess.Popen[str]:
        """Start pytest as a user would, in the repository; stdout and stderr in one pipe."""
        return subprocess.Popen(
            self.argv(*args, compose=compose, settings=settings),
            cwd=REPO,
            env=self.throwaway.environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def last_record(self) -> DeployRecord:
        record = RecordStore(self.config.state_dir).last()
        assert record is not None
        return record

    def live(self) -> Colour:
        return self.stack.router.active_colour()

    def idle(self) -> Colour:
        return other_colour(self.live())

    def idle_override(self, name: str, service_yaml: str) -> Path:
        """A Compose file that changes the idle colour's backend only: the release to deploy."""
        path = self.home / f"{name}.yml"
        path.write_text(f"services:\n  backend-{self.idle()}:\n{service_yaml}")
        return path

    def database(self) -> DatabaseBackup:
        """The app's real database."""
        (db,) = self.stack.container_ids(self.config.database.service)
        env = self.config.environment
        return DatabaseBackup(db, env["POSTGRES_DB"], env["POSTGRES_USER"], self.home)

    def answer(self, wait_s: float = 0) -> tuple[str, str]:
        """(colour, release) the public URL serves, waiting up to ``wait_s`` for a 200."""
        deadline = time.monotonic() + wait_s
        with requests.Session() as session:
            session.trust_env = False
            while True:
                try:
                    response = session.get(
                        self.config.public_url + "/api/v1/health",
                        verify=str(self.config.ca_file),
                        timeout=10,
                    )
                    if response.status_code == 200 or time.monotonic() >= deadline:
                        break
                except requests.ConnectionError:
                    if time.monotonic() >= deadline:
                        raise
                time.sleep(0.5)
        assert response.status_code == 200, response.text[-2000:]
        body = response.json()
        return body["colour"], body["release"]
