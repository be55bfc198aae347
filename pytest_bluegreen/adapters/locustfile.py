"""Load across a switch: Locust users on the public frontend, one JSON line per request.

Run by :mod:`pytest_bluegreen.adapters.locust_load` in a process of its own (``import locust``
patches the whole process with gevent). Half the users keep their connection alive, half open
a new one per request, so that a switch is seen by both kinds of client.
Settings come from the environment.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any, ClassVar

from locust import HttpUser, constant_throughput, events, task

LOG = open(os.environ["BLUEGREEN_LOAD_LOG"], "a", buffering=1, encoding="utf-8")  # noqa: SIM115
PATHS = os.environ.get("BLUEGREEN_LOAD_PATHS", "/api/v1/health").split(",")
USER_RPS = float(os.environ.get("BLUEGREEN_LOAD_USER_RPS", "5"))
CA_FILE = os.environ.get("BLUEGREEN_LOAD_CA") or None


@events.request.add_listener
def log_request(
    response_time: float,
    response: Any,
    exception: BaseException | None,
    start_time: float,
    context: dict[str, Any],
    **_: Any,
) -> None:
    headers = getattr(response, "headers", None) or {}
    sample = {
        "t": start_time,
        "ms": round(response_time, 3),
        "ok": exception is None,
        "status": getattr(response, "status_code", 0) or 0,
        "colour": headers.get("X-Bluegreen-Colour"),
        "client": context.get("client"),
        "error": None if exception is None else f"{type(exception).__name__}: {exception}"[:200],
    }
    LOG.write(json.dumps(sample) + "\n")


class _Client(HttpUser):
    abstract = True
    wait_time = constant_throughput(USER_RPS)
    client_kind: ClassVar[str] = ""
    extra_headers: ClassVar[dict[str, str]] = {}

    def on_start(self) -> None:
        self.client.trust_env = False  # REQUESTS_CA_BUNDLE and proxies from the environment
        self.client.verify = CA_FILE or True
        self.paths = itertools.cycle(PATHS)

    @task
    def get(self) -> None:
        self.client.get(
            next(self.paths),
            headers=self.extra_headers,
            context={"client": self.client_kind},
            timeout=10,
        )


class KeepAliveClient(_Client):
    client_kind: ClassVar[str] = "keep-alive"


class NewConnectionClient(_Client):
    client_kind: ClassVar[str] = "new-connection"
    extra_headers: ClassVar[dict[str, str]] = {"Connection": "close"}
