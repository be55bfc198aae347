"""The load generator: Locust in its own process, one JSON line per request.

``import locust`` patches the whole process with gevent, so it never runs in ours; its lines
are read back as :class:`~pytest_bluegreen.core.load.Sample`.
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
from pathlib import Path

from pytest_bluegreen.core.errors import DeployError
from pytest_bluegreen.core.load import Sample

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM when the deploy dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG).

    Without it, a killed deploy's load generator would go on until its time limit.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LoadRun:
    """A bounded Locust run against ``url`` (it stops by itself after ``max_seconds``)."""

    def __init__(
        self,
        url: str,
        workdir: Path,
        ca_file: Path | None,
        users: int = 8,
        user_rps: float = 5.0,
        paths: tuple[str, ...] = ("/api/v1/health", "/api/v1/aptos/", "/"),
        max_seconds: float = 60.0,
    ) -> None:
        self.url = url
        self.log = workdir / f"load-{os.getpid()}-{time.time_ns()}.jsonl"
        self.ca_file = ca_file
        self.users = users
        self.user_rps = user_rps
        self.paths = paths
        self.max_seconds = max_seconds
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, warmup_timeout_s: float = 30.0) -> None:
        """Start Locust and return once requests flow."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        env = {
            **os.environ,
            "BLUEGREEN_LOAD_LOG": str(self.log),
            "BLUEGREEN_LOAD_PATHS": ",".join(self.paths),
            "BLUEGREEN_LOAD_USER_RPS": str(self.user_rps),
            "BLUEGREEN_LOAD_CA": str(self.ca_file or ""),
        }
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
        argv += ["-u", str(self.users), "-r", str(self.users), "-H", self.url]
        argv += ["-t", f"{math.ceil(self.max_seconds)}s", "--only-summary", "--stop-timeout", "5"]
        argv += ["--loglevel", "WARNING"]
        with open(self.log.with_suffix(".out"), "wb") as output:  # Locust's own messages
            self._proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + warmup_timeout_s
        while len(self.samples()) < self.users:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DeployError(
                    f"the load generator did not start sending requests to {self.url}"
                )
            time.sleep(0.1)

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

    def samples(self) -> list[Sample]:
        out = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(line)
            except ValueError:
                continue  # a line being written
            out.append(Sample(data["t"], data["ms"], data["ok"], data.get("colour")))
        return out
