"""The running containers of the colour under test, as the hardening checks read them.

A container is reached with testinfra's Docker backend (``docker exec``, the ``bluegreen_host``
fixture); each command's output is read once per container. The packaged hardening gate and
the reference stack's infra suite both read their containers through :class:`Container`.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_bluegreen.core.errors import BluegreenError


class CommandFailed(BluegreenError):
    """A command run to inspect a container failed; the message names the service and why."""


@dataclass
class Container:
    """A running container, reached with testinfra's Docker backend (``docker exec``)."""

    role: str
    service: str
    host: Any  # testinfra.host.Host
    _outputs: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return str(self.host.backend.name)

    def read(self, command: str) -> str:
        """Stdout of ``command`` (run once per container); :class:`CommandFailed` if it fails."""
        if command not in self._outputs:
            result = self.host.run(command)
            if result.rc != 0:
                raise CommandFailed(
                    f"{self.service}: `{command}` failed in the container "
                    f"(exit status {result.rc}): {result.stderr.strip()[:300]}"
                )
            self._outputs[command] = str(result.stdout)
        return self._outputs[command]

    def output(self, command: str) -> str:
        """Stdout of ``command`` (run once per container); fails the test if the command fails."""
        try:
            return self.read(command)
        except CommandFailed as exc:
            pytest.fail(str(exc))

    def run_with_input(
        self, command: str, stdin: str, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """``command`` in the container with ``stdin``: what must not go on a command line."""
        return subprocess.run(
            ["docker", "exec", "-i", self.id, "/bin/sh", "-c", command],
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",  # a file name need not be UTF-8
            timeout=timeout,
            check=False,
        )

    def read_host_config(self) -> dict[str, Any]:
        """``HostConfig`` of ``docker inspect``; :class:`CommandFailed` if it cannot be read."""
        result = self.host.backend.run_local("docker inspect --type container %s", self.id)
        if result.rc != 0:
            raise CommandFailed(f"{self.service}: docker inspect {self.id} failed: {result.stderr}")
        host_config: dict[str, Any] = json.loads(result.stdout)[0]["HostConfig"]
        return host_config

    def host_config(self) -> dict[str, Any]:
        """``HostConfig`` of ``docker inspect``: what Docker was told to apply."""
        try:
            return self.read_host_config()
        except CommandFailed as exc:
            pytest.fail(str(exc))
