"""Docker Compose, v2 (``docker compose``) where present, else v1 (``docker-compose``)."""

from __future__ import annotations

import re
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from pytest_bluegreen.core.errors import CommandTimeout, ComposeError, DiskFull, DockerUnavailable

Runner = Callable[..., "subprocess.CompletedProcess[str]"]

# A Compose duration: "20s", "1m30s", "1.5s", "500ms", "1h" (Go's units); a bare number is seconds.
DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(us|µs|ms|s|m|h)")
DURATION_UNITS: Final = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def detect_compose_command(run: Runner = subprocess.run) -> tuple[str, ...]:
    """Return the argv prefix of the Compose available here, v2 first."""
    if shutil.which("docker"):
        try:
            probe = run(
                ["docker", "compose", "version"], capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.TimeoutExpired):
            probe = None
        if probe is not None and probe.returncode == 0:
            return ("docker", "compose")
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    raise DockerUnavailable(
        "neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed; "
        "install Docker Compose (Debian: the docker-compose package)"
    )


@dataclass(frozen=True, slots=True)
class PublishedPort:
    """A port a service publishes on the host: where it binds, and the host port."""

    host_ip: str
    port: int


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One service as Compose resolves it: what a deploy needs to know before it starts it."""

    name: str
    image: str  # the tag Compose builds or pulls (its own default name when the file sets none)
    builds: bool  # has a ``build:`` section, so a missing image is built, not pulled
    profiles: tuple[str, ...] = ()  # optional services; a deploy never starts these
    ports: tuple[PublishedPort, ...] = ()
    # What a container of it is started with, outside Compose too (the migration rehearsal):
    # values as Compose resolved them, with its "$$" escapes undone. None: the image's own.
    environment: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    user: str | None = None
    working_dir: str | None = None
    init: bool = False
    # Its healthcheck's ``test`` as written: ("CMD", argv...), ("CMD-SHELL", line) or ("NONE",).
    healthcheck: tuple[str, ...] = ()
    # Seconds from SIGTERM to SIGKILL when it stops (stop_grace_period); None: Docker's 10 s.
    stop_grace_s: float | None = None

    def healthcheck_argv(self) -> list[str] | None:
        """The healthcheck as a command to run in its container; None without one."""
        return healthcheck_argv(self.healthcheck)


@dataclass(frozen=True, slots=True)
class Compose:
    """One Compose project: its files, name, directory and environment."""

    command: tuple[str, ...]
    files: tuple[Path, ...]
    project_name: str
    project_dir: Path
    env: Mapping[str, str]
    run_process: Runner = subprocess.run

    def argv(self, *args: str) -> list[str]:
        # No --project-directory: relative paths in a file resolve against that file's folder.
        argv = [*self.command, "--project-name", self.project_name]
        for path in self.files:
            argv += ["-f", str(path)]
        return [*argv, *args]

    def run(
        self, *args: str, timeout: float | None = 900, capture: bool = True, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run one Compose command; a failure raises :class:`ComposeError` with its output."""
        argv = self.argv(*args)
        try:
            result = self.run_process(
                argv,
                cwd=self.project_dir,
                # The project's name, for files that name their images after it.
                env={**self.env, "COMPOSE_PROJECT_NAME": self.project_name},
                capture_output=capture,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"'{' '.join(args)}' did not finish within {timeout:g}s") from None
        if check and result.returncode != 0:
            output = ((result.stderr or "") + (result.stdout or "")).strip()
            tail = "\n".join(output.splitlines()[-30:])
            raise ComposeError(f"'{' '.join(args)}' failed (exit {result.returncode}):\n{tail}")
        return result

    def services(self) -> dict[str, ServiceSpec]:
        """Every service as ``compose config`` resolves it; checks the files on the way."""
        text = self.run("config", timeout=60).stdout
        try:
            resolved = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ComposeError(f"cannot read the output of 'config': {exc}") from None
        return {
            name: self._service_spec(name, spec or {})
            for name, spec in (resolved.get("services") or {}).items()
        }

    def _service_spec(self, name: str, spec: dict[str, Any]) -> ServiceSpec:
        # Without `image:`, v1 names a built image project_service and v2 project-service.
        sep = "_" if self.command == ("docker-compose",) else "-"
        image = str(spec.get("image") or f"{self.project_name}{sep}{name}")
        grace = spec.get("stop_grace_period")
        return ServiceSpec(
            name=name,
            image=image,
            builds="build" in spec,
            profiles=tuple(spec.get("profiles") or ()),
            ports=tuple(p for raw in spec.get("ports") or () if (p := _published(raw))),
            environment=_environment(spec.get("environment")),
            command=_argv(spec.get("command")),
            entrypoint=_argv(spec.get("entrypoint")),
            user=_text(spec.get("user")),
            working_dir=_text(spec.get("working_dir")),
            init=bool(spec.get("init")),
            healthcheck=_healthcheck_test(spec.get("healthcheck")),
            stop_grace_s=None if grace is None else parse_duration(str(grace)),
        )

    def build(self, services: Sequence[str], timeout: float = 1800) -> None:
        # v1's classic builder keeps the container of a failed step unless told not to.
        flags = ["--force-rm"] if self.command == ("docker-compose",) else []
        try:
            self.run("build", *flags, *services, timeout=timeout)
        except ComposeError as exc:
            if "no space left on device" in str(exc).lower():
                raise DiskFull(
                    f"no space left on device while building {', '.join(services)}: free "
                    "some room for Docker's images (docker system df; docker image prune)"
                ) from None
            raise

    def up(
        self, services: Sequence[str], *, no_deps: bool = True, force_recreate: bool = False
    ) -> None:
        flags = ["-d", "--no-build"] + (["--no-deps"] if no_deps else [])
        flags += ["--force-recreate"] if force_recreate else []
        self.run("up", *flags, *services, timeout=300)

    def stop(self, services: Sequence[str], timeout_s: int = 10) -> None:
        self.run("stop", "-t", str(timeout_s), *services, timeout=120)

    def remove(self, services: Sequence[str]) -> None:
        self.run("rm", "-f", "-s", *services, timeout=120)

    def down(self, *, volumes: bool = False) -> None:
        self.run("down", "--remove-orphans", *(["--volumes"] if volumes else []), timeout=300)

    def start(self, services: Sequence[str]) -> None:
        """Start existing, stopped containers (a retired colour, for a rollback)."""
        self.run("start", *services, timeout=120)

    def restart(self, services: Sequence[str]) -> None:
        self.run("restart", *services, timeout=120)

    def run_once(
        self,
        service: str,
        command: Sequence[str],
        timeout: float = 300,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Run ``command`` in a fresh, removed container of ``service`` (no dependencies).

        Past ``timeout`` the command is killed, and so is its container: Compose's own client
        dies with the timeout, and would leave the container running.
        """
        name = f"{self.project_name}-{service}-run-{secrets.token_hex(4)}"
        flags = ["--name", name, *_env_flags(env or {})]
        try:
            result = self.run(
                "run", "--rm", "--no-deps", "-T", *flags, service, *command, timeout=timeout
            )
        except CommandTimeout:
            self.run_process(
                ["docker", "rm", "-f", name], capture_output=True, text=True, timeout=60
            )
            raise
        return result.stdout


def parse_duration(value: str) -> float:
    """Seconds of a Compose duration: "20s", "1m30s", "1.5s", "500ms"; a bare number is seconds."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = DURATION_PART.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise ComposeError(f"{value!r} is not a duration (like 10s, 1m30s or 500ms)")
    return sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)


def healthcheck_argv(test: Sequence[str]) -> list[str] | None:
    """A Compose healthcheck ``test`` as argv: CMD's own, CMD-SHELL's line under ``sh -c``.

    None when there is no test, or it is disabled (NONE).
    """
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:]) or None
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", " ".join(test[1:])] if test[1:] else None
    return ["sh", "-c", " ".join(test)]  # a plain string: a shell line, as Compose reads it


def _unescape(value: str) -> str:
    """A value of ``compose config``'s output as the container gets it ("$$" is one "$")."""
    return value.replace("$$", "$")


def _text(raw: object) -> str | None:
    return None if raw is None else _unescape(str(raw))


def _argv(raw: object) -> tuple[str, ...] | None:
    """``command``/``entrypoint``: a list as it is, a string split as a shell would."""
    if isinstance(raw, str):
        return tuple(shlex.split(_unescape(raw)))
    if isinstance(raw, list | tuple):
        return tuple(_unescape(str(item)) for item in raw)
    return None


def _environment(raw: object) -> dict[str, str]:
    """``environment`` as a mapping (v1 and v2 both write one; a list is read too).

    A variable without a value (neither the file nor the shell sets it) is left out.
    """
    if isinstance(raw, dict):
        pairs = [(str(k), v) for k, v in raw.items()]
    elif isinstance(raw, list):
        pairs = [(k, v) for k, sep, v in (str(item).partition("=") for item in raw) if sep]
    else:
        return {}
    return {key: _unescape(str(value)) for key, value in pairs if value is not None}


def _healthcheck_test(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, dict):
        return ()
    if raw.get("disable"):
        return ("NONE",)
    test = raw.get("test")
    if isinstance(test, str):
        return ("CMD-SHELL", _unescape(test))
    return tuple(_unescape(str(item)) for item in test or ())


def _published(raw: object) -> PublishedPort | None:
    """A ``ports:`` entry of ``compose config``: v1's "ip:host:container/proto" or v2's mapping."""
    if isinstance(raw, dict):
        published, host_ip = raw.get("published"), str(raw.get("host_ip") or "0.0.0.0")
    else:
        parts = str(raw).split("/")[0].rsplit(":", 2)
        if len(parts) < 2:
            return None  # only a container port: Docker picks a free host port
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        published = parts[-2]
    try:
        return PublishedPort(host_ip.strip("[]") or "0.0.0.0", int(str(published)))
    except ValueError:
        return None  # a range or an empty host port: nothing fixed to check


def _env_flags(env: Mapping[str, str]) -> list[str]:
    return [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
