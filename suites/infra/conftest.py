"""The containers of the colour under test, for the infra checks, each looked up once."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_bluegreen.adapters.stack import Stack
from pytest_bluegreen.adapters.testinfra_hosts import service_name
from pytest_bluegreen.core.colours import Colour

ROLES = ("backend", "frontend")


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

    def output(self, command: str) -> str:
        """Stdout of ``command`` (run once per module); fails the test if the command fails."""
        if command not in self._outputs:
            result = self.host.run(command)
            if result.rc != 0:
                pytest.fail(
                    f"{self.service}: `{command}` failed in the container "
                    f"(exit status {result.rc}): {result.stderr.strip()[:300]}"
                )
            self._outputs[command] = str(result.stdout)
        return self._outputs[command]

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

    def host_config(self) -> dict[str, Any]:
        """``HostConfig`` of ``docker inspect``: what Docker was told to apply."""
        result = self.host.backend.run_local("docker inspect --type container %s", self.id)
        if result.rc != 0:
            pytest.fail(f"{self.service}: docker inspect {self.id} failed: {result.stderr}")
        host_config: dict[str, Any] = json.loads(result.stdout)[0]["HostConfig"]
        return host_config


@pytest.fixture(scope="module")
def container(
    request: pytest.FixtureRequest,
    bluegreen_host: Callable[[str], Any],
    bluegreen_stack: Stack,
    bluegreen_colour: Colour | None,
) -> Container:
    """The running container of a role ("backend", "frontend") of the colour under test.

    Module-scoped: every check of a role reuses its container and the outputs already read.
    """
    role: str = request.param
    service = service_name(bluegreen_stack.config, bluegreen_colour, role)
    return Container(role, service, bluegreen_host(role))
