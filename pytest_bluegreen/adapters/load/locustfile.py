"""Load across a switch: Locust users on the public frontend, one JSON line per request.

Run by :mod:`.locust_runner` in a process of its own (``import locust`` patches the whole
process with gevent). Half the users keep their connection alive, half open
a new one per request, so that a switch is seen by both kinds of client.
Settings come from the environment.

Held until released: the process starts, imports and spawns its users during the gates, and no
user sends a request until the go-file exists (the deploy's switch stage writes it). The run then
lasts ``BLUEGREEN_LOAD_RUN_S``; a run never released ends with Locust's own ``--run-time``.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import gevent  # type: ignore[import-untyped]  # Locust's, no stubs here
import gevent.event  # type: ignore[import-untyped]
from locust import HttpUser, constant_throughput, events, task
from locust.env import Environment
from locust.exception import RescheduleTaskImmediately, StopUser

LOG = open(os.environ["BLUEGREEN_LOAD_LOG"], "a", buffering=1, encoding="utf-8")  # noqa: SIM115
PATHS = os.environ.get("BLUEGREEN_LOAD_PATHS", "/api/v1/health").split(",")
USER_RPS = float(os.environ.get("BLUEGREEN_LOAD_USER_RPS", "5"))
CA_FILE = os.environ.get("BLUEGREEN_LOAD_CA") or None
GO_FILE = os.environ.get("BLUEGREEN_LOAD_GO") or None  # none: released at once
READY_FILE = os.environ.get("BLUEGREEN_LOAD_READY") or None
RUN_S = float(os.environ.get("BLUEGREEN_LOAD_RUN_S") or 0)  # 0: until --run-time or SIGTERM
GO_POLL_S = 0.01  # one stat() per poll, in one greenlet: the release costs at most this

RELEASED = gevent.event.Event()
WAKE = gevent.event.Event()  # the release, or the run stopping before it


@events.init.add_listener
def hold_until_the_go_file(environment: Environment, **_: Any) -> None:
    gevent.spawn(_wait_for_go, environment)


def _wait_for_go(environment: Environment) -> None:
    while GO_FILE is not None and not os.path.exists(GO_FILE):
        gevent.sleep(GO_POLL_S)
    RELEASED.set()
    WAKE.set()
    if RUN_S > 0 and environment.runner is not None:
        gevent.spawn_later(RUN_S, environment.runner.quit)


@events.spawning_complete.add_listener
def tell_ready(**_: Any) -> None:
    """Every user is spawned (and held): the deploy may release them."""
    if READY_FILE is not None:
        Path(READY_FILE).touch()


@events.test_stopping.add_listener
def wake_held_users(**_: Any) -> None:
    WAKE.set()  # a held user stops at once, instead of after --stop-timeout


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
        if not RELEASED.is_set():
            WAKE.wait()
            if not RELEASED.is_set():
                raise StopUser  # the run ends before its release: no request at all
            raise RescheduleTaskImmediately  # the first request, paced as without a hold
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
