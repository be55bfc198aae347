"""What every engine's stack shares: its Compose files resolved, the files it needs, its images.

Compose on one host and a Swarm stack both read the same Compose files (the Compose CLI
resolves them), need the same env file, certificate and map files before anything starts,
keep and prune release images on the deploy's Docker engine the same way, retire a colour
later from a detached process, and wait for a revived colour's preview the same way. Each
engine holds one :class:`Project` and adds what is its own (how services start, stop and are
watched).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from pytest_bluegreen.adapters.engines.compose_cli import Compose, ServiceSpec
from pytest_bluegreen.adapters.engines.docker_api import DockerEngine
from pytest_bluegreen.adapters.routers.haproxy import (
    RELEASES_MAP,
    read_map_file,
    write_map_file,
    write_releases_map,
)
from pytest_bluegreen.adapters.routers.tls import ensure_certificate, install_certificate
from pytest_bluegreen.checks.probe import check_colour_serves
from pytest_bluegreen.core.colours import COLOURS, Colour
from pytest_bluegreen.core.config import StackConfig, read_env_file
from pytest_bluegreen.core.errors import ConfigError, StackError
from pytest_bluegreen.core.ports import Progress
from pytest_bluegreen.reporting.secrets import is_secret_name

# Always generated into a new env file: the router's stats password.
ROUTER_SECRETS: Final = ("STATS_PASSWORD",)
# A revive asks the preview again this often after a wrong answer: each wait is time users
# spend on the colour that failed (the preview's requests cost a TLS connection each).
PREVIEW_RETRY_S: Final = 0.05
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


class Project:
    """One blue-green project: its settings, its Compose files, the deploy's Docker engine.

    ``release_env`` (BLUE_RELEASE/GREEN_RELEASE as recorded, set by a deploy) wins over the
    environment in every Compose command, whichever engine runs them.
    """

    def __init__(
        self,
        config: StackConfig,
        progress: Progress,
        engine: DockerEngine,
        compose_command: tuple[str, ...],
    ) -> None:
        self.config = config
        self.progress = progress
        self.engine = engine
        self.compose_command = compose_command
        self.release_env: dict[str, str] = {}
        self._services: dict[str, ServiceSpec] | None = None  # as Compose resolves them

    @property
    def compose(self) -> Compose:
        """Built per use: the environment follows the env file, which prepare() may write."""
        return self.compose_with({})

    def compose_with(self, env: dict[str, str]) -> Compose:
        """The Compose CLI on the project's files, ``env`` over the recorded releases."""
        return self.compose_in({**self.config.environment, **self.release_env, **env})

    def compose_in(self, env: dict[str, str]) -> Compose:
        """The Compose CLI on the project's files, in exactly ``env``."""
        return Compose(
            command=self.compose_command,
            files=self.config.compose_files,
            project_name=self.config.project_name,
            project_dir=self.config.project_dir,
            env=env,
        )

    def read_services(self) -> list[str]:
        """The services as Compose resolves the files (which validates them), kept for later."""
        self._services = self.compose.services()
        return list(self._services)

    def specs(self) -> dict[str, ServiceSpec]:
        """The services as last read (read now the first time)."""
        if self._services is None:
            self.read_services()
        assert self._services is not None
        return self._services

    def shared_services(self, specs: dict[str, ServiceSpec] | None = None) -> list[str]:
        """The services both colours share (database, loadbalancer): none of a profile."""
        specs = self.specs() if specs is None else specs
        colours = {s for c in COLOURS for s in self.config.services.release_services_of(c)}
        return [name for name, spec in specs.items() if name not in colours and not spec.profiles]

    def prepare(self, live: Colour, running_services: Callable[[Iterable[str]], list[str]]) -> None:
        """Make the env file, certificate and map file the stack needs; keep existing ones."""
        cfg = self.config
        if ensure_env_file(cfg.env_file, cfg.project_dir / ".env.example", dict(cfg.env)):
            self.progress(f"wrote {cfg.env_file} with new random secrets")
        cfg.lb_state_dir.mkdir(parents=True, exist_ok=True)
        cfg.tls_dir.mkdir(parents=True, exist_ok=True)  # mounted by the router, even empty
        if self._prepare_tls():
            self.progress(f"wrote HAProxy's certificate {cfg.site_pem} ({cfg.router.tls} TLS)")
            if running_services([cfg.services.loadbalancer]):
                self.progress("warning: the running loadbalancer serves the old certificate")
        if read_map_file(cfg.map_file) is None:
            write_map_file(cfg.map_file, live)
        releases = cfg.map_file.with_name(RELEASES_MAP)
        if not releases.exists():  # a configuration that reads it refuses to start without it
            write_releases_map(releases, {})

    def _prepare_tls(self) -> bool:
        """HAProxy's certificate as the ``tls`` setting says; True when it wrote one."""
        cfg = self.config
        if cfg.router.tls == "self-signed":
            names, addresses = certificate_hosts(
                (cfg.router.public_host, cfg.router.preview_host, "localhost")
            )
            return ensure_certificate(cfg.site_pem, names, addresses)
        if cfg.router.tls == "files":
            cert, key = cfg.router.tls_cert_file, cfg.router.tls_key_file
            if cert is None or key is None:
                raise ConfigError(
                    "bluegreen.router.tls = 'files' needs tls_cert_file and tls_key_file"
                )
            return install_certificate(cfg.site_pem, cert, key)
        return False  # off: TLS ends upstream

    def prune_release_images(
        self, keep: int, protect: Iterable[str], specs: dict[str, ServiceSpec] | None = None
    ) -> list[str]:
        """Remove all but the ``keep`` newest tags of each colour service's image repository.

        Tags in ``protect`` (the live and the previous colour's releases) always stay, and so
        does an image a container still uses. Returns the references removed.
        """
        protected = set(protect)
        names = {s for c in COLOURS for s in self.config.services.release_services_of(c)}
        specs = self.specs() if specs is None else specs
        repos = sorted({repository(spec.image) for n, spec in specs.items() if n in names})
        removed = []
        for repo in repos:
            for tag, _ in self.engine.image_tags(repo)[keep:]:
                if tag not in protected and self.engine.remove_image(f"{repo}:{tag}") is None:
                    removed.append(f"{repo}:{tag}")
        return removed

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

    def wait_serving(self, colour: Colour, timeout_s: float) -> None:
        """Wait (bounded) until ``colour``'s preview has answered every critical path from it.

        The paths are asked side by side, and one that answered is not asked again: the wait
        is the slowest path's, not the sum of all (a just-started app's first answers are its
        slowest).
        """
        cfg = self.config
        url = cfg.preview_url(colour)

        def problems_of(path: str) -> list[str]:
            return check_colour_serves(
                url, [path], colour, cfg.ca_file, expected_status=cfg.gates.expected_status
            )

        deadline = time.monotonic() + timeout_s
        pending: Sequence[str] = list(cfg.gates.critical_paths)
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
