"""Containers outside Compose: a service's resolved definition started with ``docker run``.

The migration rehearsal needs what Compose cannot give it: a service's containers on a network
of their own, which reaches nothing of the stack. So it starts them with the docker CLI from the
definition Compose resolved (:class:`~.compose_cli.ServiceSpec`): image, environment,
entrypoint, command, user, working directory, init, never a volume or a port.

The environment, secrets included, goes through a 0600 file given to ``--env-file`` and removed
as soon as ``docker run`` has returned: never ``-e NAME=value`` on a command line, where every
user of the host can read it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pytest_bluegreen.adapters.engines.compose_cli import ServiceSpec
from pytest_bluegreen.core.errors import CommandTimeout, DockerUnavailable, StackError

Runner = Callable[..., "subprocess.CompletedProcess[str]"]
LABEL: Final = "bluegreen.rehearsal"  # on every container and network of a rehearsal: its project
SHORT_TIMEOUT_S: Final = 60.0  # inspecting, creating or removing something


def env_file_text(env: Mapping[str, str]) -> str:
    """``env`` as docker's ``--env-file`` reads it: ``NAME=value`` lines, taken literally.

    Docker has no quoting there, so a value spanning lines cannot be passed: an error that
    names the variable (never its value).
    """
    lines = []
    for name, value in env.items():
        if not name or "=" in name or any(c in name for c in "\r\n\0") or name != name.strip():
            raise StackError(f"environment variable name {name!r} cannot go into an env file")
        if any(c in value for c in "\r\n\0"):
            raise StackError(
                f"the value of {name} spans lines: docker's --env-file cannot pass it (put it "
                "in a file the container reads instead)"
            )
        lines.append(f"{name}={value}\n")
    return "".join(lines)


@contextlib.contextmanager
def private_env_file(env: Mapping[str, str], directory: Path | None = None) -> Iterator[Path]:
    """A mode 0600 env file of ``env``, removed when the block ends, whatever happens in it."""
    text = env_file_text(env)
    fd, name = tempfile.mkstemp(prefix="bg-env-", suffix=".env", dir=directory)
    path = Path(name)
    try:
        os.fchmod(fd, 0o600)  # mkstemp's mode already; said, not assumed
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        yield path
    finally:
        path.unlink(missing_ok=True)


def run_argv(
    spec: ServiceSpec,
    name: str,
    *,
    network: str,
    env_file: Path,
    alias: str | None = None,
    command: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    """The ``docker run -d`` arguments (after ``docker``) of one container of ``spec``.

    Attached to ``network`` only; ``command`` replaces the service's (which, when unset, is the
    image's). An entrypoint of several words is its first word as ``--entrypoint`` and the
    others before the command, as Compose does it.
    """
    argv = ["run", "-d", "--name", name, "--network", network, "--env-file", str(env_file)]
    if alias:
        argv += ["--network-alias", alias]
    for key, value in (labels or {}).items():
        argv += ["--label", f"{key}={value}"]
    if spec.user is not None:
        argv += ["--user", spec.user]
    if spec.working_dir is not None:
        argv += ["--workdir", spec.working_dir]
    if spec.init:
        argv += ["--init"]
    entry_args: tuple[str, ...] = ()
    if spec.entrypoint is not None:
        entry, *rest = spec.entrypoint or ("",)
        argv += ["--entrypoint", entry]
        entry_args = tuple(rest)
    chosen = spec.command if command is None else tuple(command)
    return [*argv, spec.image, *entry_args, *(chosen or ())]


@dataclass(frozen=True, slots=True)
class DockerCLI:
    """The docker CLI, every call bounded: ``timeout_s`` for a run or an exec."""

    timeout_s: float = 600.0
    docker: tuple[str, ...] = ("docker",)
    run_process: Runner = subprocess.run

    def _call(self, args: Sequence[str], timeout_s: float, what: str) -> tuple[int, str]:
        argv = [*self.docker, *args]
        try:
            result = self.run_process(
                argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            raise DockerUnavailable(
                f"cannot run {' '.join(self.docker)!r}: not installed or not on PATH"
            ) from None
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"{what} did not finish within {timeout_s:g}s") from None
        return result.returncode, ((result.stdout or "") + (result.stderr or "")).strip()

    def _check(self, args: Sequence[str], timeout_s: float, what: str) -> str:
        code, output = self._call(args, timeout_s, what)
        if code != 0:
            tail = "\n".join(output.splitlines()[-20:])
            raise StackError(f"{what} failed (exit {code}):\n{tail}")
        return output

    def create_network(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """A new internal bridge network: its containers reach each other, and nothing else."""
        flags = [arg for k, v in (labels or {}).items() for arg in ("--label", f"{k}={v}")]
        what = f"creating the network {name}"
        self._check(["network", "create", "--internal", *flags, name], SHORT_TIMEOUT_S, what)

    def remove_network(self, name: str) -> None:
        """Remove a network; nothing when it is already gone."""
        code, output = self._call(["network", "rm", name], SHORT_TIMEOUT_S, f"removing {name}")
        if code != 0 and not any(s in output.lower() for s in ("no such network", "not found")):
            raise StackError(f"cannot remove the network {name}: {output}")

    def remove(self, name: str) -> None:
        """Remove a container, running or not, with its anonymous volumes; nothing if gone."""
        code, output = self._call(["rm", "-f", "-v", name], SHORT_TIMEOUT_S, f"removing {name}")
        if code != 0 and "no such container" not in output.lower():
            raise StackError(f"cannot remove the container {name}: {output}")

    def exists(self, kind: str, name: str) -> bool:
        """Whether a ``container`` or ``network`` of that exact name exists."""
        code, _ = self._call([kind, "inspect", name], SHORT_TIMEOUT_S, f"inspecting {name}")
        return code == 0

    def run(
        self,
        spec: ServiceSpec,
        name: str,
        env: Mapping[str, str],
        *,
        network: str,
        alias: str | None = None,
        command: Sequence[str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Start a detached container ``name`` of ``spec`` with ``env``, on ``network`` only.

        A run past its bound is removed: the killed client would leave it to start anyway.
        """
        with private_env_file(env) as env_file:
            argv = run_argv(
                spec,
                name,
                network=network,
                env_file=env_file,
                alias=alias,
                command=command,
                labels=labels,
            )
            try:
                self._check(argv, self.timeout_s, f"starting {name} ({spec.image})")
            except CommandTimeout:
                with contextlib.suppress(StackError, CommandTimeout):
                    self.remove(name)
                raise

    def exec(self, name: str, argv: Sequence[str], timeout_s: float) -> tuple[int, str]:
        """Run ``argv`` in a running container: (exit code, output); 124 past ``timeout_s``."""
        try:
            return self._call(["exec", name, *argv], timeout_s, f"'{' '.join(argv)}' in {name}")
        except CommandTimeout as exc:
            return 124, str(exc)

    def ip_on(self, name: str, network: str) -> str:
        """The container's address on ``network``: the host reaches a bridge network's ones."""
        template = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
        what = f"inspecting {name}"
        address = self._check(["inspect", "-f", template, name], SHORT_TIMEOUT_S, what)
        if not address or address == "<no value>":
            raise StackError(f"container {name} has no address on the network {network}")
        return address
