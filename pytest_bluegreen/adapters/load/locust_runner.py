"""The load generator: Locust in its own process, one JSON line per request.

Launched held (the process and its imports cost about a second) and released when the load
should begin: a deploy launches it during the gates and releases it in the switch stage.

``import locust`` patches the whole process with gevent, so it never runs in ours; its lines
are read back as :class:`~pytest_bluegreen.core.load_figures.Sample`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.errors import DeployError
from pytest_bluegreen.core.load_figures import Sample

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
HOLD_S = 3600.0  # a launched run never released: longer than any deploy's gates
RELEASE_POLL_S = 0.02

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM when the deploy dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG).

    Without it, a killed deploy's load generator would go on until its time limit.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def locust_load(config: StackConfig, max_seconds: float) -> LoadRun:
    """Locust on the public URL, as many users as the settings say; it stops by itself."""
    return LoadRun(
        config.public_url,
        config.state_dir / "load",
        config.ca_file,
        users=config.load.users,
        user_rps=config.load.user_rps,
        paths=config.load.paths,
        max_seconds=max_seconds,
    )


class LoadRun:
    """A bounded Locust run against ``url``, launched held and then released.

    :meth:`launch` starts the process (a second or so: Python, Locust's imports, the users
    spawned) with every user held; :meth:`release` lets them send. After the release the run
    stops by itself after ``max_seconds``; held, after ``hold_s`` (Locust's ``--run-time``
    covers both), and it dies with the deploy's process in any case.
    """

    def __init__(
        self,
        url: str,
        workdir: Path,
        ca_file: Path | None,
        users: int = 8,
        user_rps: float = 5.0,
        paths: tuple[str, ...] = ("/api/v1/health", "/api/v1/aptos/", "/"),
        max_seconds: float = 60.0,
        hold_s: float = HOLD_S,
    ) -> None:
        self.url = url
        self.log = workdir / f"load-{os.getpid()}-{time.time_ns()}.jsonl"
        self.go_file = self.log.with_suffix(".go")  # its existence releases the users
        self.ready_file = self.log.with_suffix(".ready")  # Locust's: every user spawned, held
        self.ca_file = ca_file
        self.users = users
        self.user_rps = user_rps
        self.paths = paths
        self.max_seconds = max_seconds
        self.hold_s = hold_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._launched_at = 0.0  # time.monotonic()

    def start(self, warmup_timeout_s: float = 30.0) -> None:
        """Launch and release at once; return once requests flow."""
        self.launch()
        self.release(warmup_timeout_s)

    def launch(self) -> None:
        """Start Locust with its users spawned and held: not a request before :meth:`release`."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        self.go_file.unlink(missing_ok=True)
        self.ready_file.unlink(missing_ok=True)
        env = {
            **os.environ,
            "BLUEGREEN_LOAD_LOG": str(self.log),
            "BLUEGREEN_LOAD_PATHS": ",".join(self.paths),
            "BLUEGREEN_LOAD_USER_RPS": str(self.user_rps),
            "BLUEGREEN_LOAD_CA": str(self.ca_file or ""),
            "BLUEGREEN_LOAD_GO": str(self.go_file),
            "BLUEGREEN_LOAD_READY": str(self.ready_file),
            "BLUEGREEN_LOAD_RUN_S": str(self.max_seconds),
        }
        run_time = math.ceil(self.hold_s + self.max_seconds)  # the bound of a run never released
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
        argv += ["-u", str(self.users), "-r", str(self.users), "-H", self.url]
        argv += ["-t", f"{run_time}s", "--only-summary", "--stop-timeout", "5"]
        argv += ["--loglevel", "WARNING"]
        self._launched_at = time.monotonic()
        with open(self.log.with_suffix(".out"), "wb") as output:  # Locust's own messages
            self._proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                preexec_fn=_die_with_parent,
            )

    def release(self, warmup_timeout_s: float = 30.0) -> None:
        """Let the held users send; return once each has sent a request.

        A run that is not there (never launched) or was held past ``hold_s`` (its ``--run-time``
        would cut it short) is launched afresh first.
        """
        if time.monotonic() - self._launched_at > self.hold_s:
            self.stop()
        if self._proc is None or self._proc.poll() is not None:
            self.launch()
        deadline = time.monotonic() + warmup_timeout_s
        self._wait(self.ready_file.exists, deadline)
        self.go_file.touch()
        self._wait(lambda: len(self.samples()) >= self.users, deadline)

    def _wait(self, done: Callable[[], bool], deadline: float) -> None:
        """Until ``done``, bounded; the run stopped and a DeployError when it never comes."""
        while not done():
            if self._proc is None or self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DeployError(
                    f"the load generator did not start sending requests to {self.url}"
                )
            time.sleep(RELEASE_POLL_S)

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._proc = None
        self.go_file.unlink(missing_ok=True)
        self.ready_file.unlink(missing_ok=True)

    def samples(self) -> list[Sample]:
        out = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(line)
            except ValueError:
                continue  # a line being written
            out.append(Sample(data["t"], data["ms"], data["ok"], data.get("colour")))
        return out
