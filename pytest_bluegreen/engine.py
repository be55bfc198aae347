"""The Docker engine, seen through the docker SDK: reachability, container state, logs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from pytest_bluegreen.errors import DockerUnavailable


@dataclass(frozen=True, slots=True)
class ContainerState:
    """What Docker says about one container."""

    id: str
    name: str
    status: str  # created, running, exited, ...
    health: str | None  # starting, healthy, unhealthy; None without a healthcheck
    exit_code: int

    @property
    def ready(self) -> bool:
        return self.status == "running" and self.health in (None, "healthy")

    @property
    def failed(self) -> bool:
        return self.status in ("exited", "dead", "restarting") or self.health == "unhealthy"

    def describe(self) -> str:
        if self.status != "running":
            return f"{self.status} (exit code {self.exit_code})"
        return self.health or "running"


class DockerEngine:
    """A connected Docker engine; construction fails with a clear message when there is none."""

    def __init__(self, client: Any | None = None) -> None:
        try:
            self._client = client or docker.from_env(timeout=30)
        except docker.errors.DockerException as exc:
            raise DockerUnavailable(
                f"cannot reach the Docker daemon ({exc}); start it, e.g. with "
                "scripts/ensure-docker.sh, or set DOCKER_HOST"
            ) from None
        try:
            self._client.ping()
        except docker.errors.DockerException as exc:
            self._client.close()
            raise DockerUnavailable(
                f"cannot reach the Docker daemon ({exc}); start it, e.g. with "
                "scripts/ensure-docker.sh, or set DOCKER_HOST"
            ) from None

    def state(self, container_id: str) -> ContainerState:
        attrs = self._client.api.inspect_container(container_id)
        state = attrs["State"]
        health = state.get("Health")
        return ContainerState(
            id=attrs["Id"],
            name=attrs["Name"].lstrip("/"),
            status=state["Status"],
            health=health["Status"] if health else None,
            exit_code=int(state.get("ExitCode", 0)),
        )

    def logs(self, container_id: str, tail: int = 50) -> str:
        try:
            raw = self._client.api.logs(container_id, tail=tail)
        except docker.errors.APIError as exc:
            return f"(logs unavailable: {exc})"
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    def image_id(self, reference: str) -> str | None:
        try:
            return str(self._client.api.inspect_image(reference)["Id"])
        except docker.errors.ImageNotFound:
            return None
