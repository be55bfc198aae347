"""A real stack to break, users' traffic through it, and what a user checks afterwards.

The scenarios run on Compose project ``bgscen`` (loopback ports 58xxx, its own state and
secrets). Each runs ``pytest --bg-deploy`` as a user would, in its own process, while Locust
plays the users on the public URL for the whole scenario.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pytest_bluegreen.adapters.load.locust_runner import LoadRun
from pytest_bluegreen.core.lock import DeployLock
from tests.harness import NOISY_P99, StackUser, Throwaway, ports

PROJECT = "bgscen"
PORTS = ports(58000)
# Every scenario's data is compared by these: rows and an md5 of every row, in id order.
DATA_SQL = """
SELECT 'aptos_builder', count(*), md5(coalesce(string_agg(b::text, '|' ORDER BY b.id), ''))
  FROM aptos_builder b
UNION ALL
SELECT 'aptos_apartment', count(*), md5(coalesce(string_agg(a::text, '|' ORDER BY a.id), ''))
  FROM aptos_apartment a
"""


class Webhook:
    """A local receiver for the deploys' notifications: every payload, as text."""

    def __init__(self) -> None:
        received: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(self.rfile.read(length).decode("utf-8", "replace"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Deploy:
    """A deploy process: its output so far, and actions to run when a line appears."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def start_reading(self, triggers: list[tuple[str, Callable[[], None]]]) -> None:
        pending = list(triggers)

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                for marker, action in list(pending):
                    if marker in line:
                        pending.remove((marker, action))
                        action()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def wait(self, timeout_s: float = 600) -> str:
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return "".join(self.lines)


@dataclass
class ScenarioHost(StackUser):
    """The stack under test and the user's view of it."""

    notes: dict[str, str] = field(default_factory=dict)  # what an action saw
    outputs: list[str] = field(default_factory=list)  # every deploy's terminal output
    survived: list[dict[str, object]] = field(default_factory=list)  # one row per scenario
    release_override = StackUser.idle_override  # the idle colour's backend: the broken release

    def start_deploy(
        self, release: str, compose: list[Path] | None = None, settings: Path | None = None
    ) -> Deploy:
        report = self.home / "reports" / f"{release}.html"
        proc = self.start(
            "--bg-deploy",
            "--bg-release",
            release,
            f"--html={report}",
            "--self-contained-html",
            compose=compose,
            settings=settings,
        )
        return Deploy(proc)

    def answer(self, wait_s: float = 30) -> tuple[str, str]:
        """(colour, release) the public URL serves (waiting a little for a fault to heal)."""
        return super().answer(wait_s)

    def data(self) -> list[tuple[str, ...]]:
        """Rows and a checksum of every row of the app's tables."""
        database = self.database()
        return database.query(database.database, DATA_SQL)

    def containers(self) -> dict[str, str]:
        """Every container on the engine (any project, build steps too): id -> its labels."""
        fmt = '{{.ID}} {{.Names}} {{.Label "com.docker.compose.project"}}'
        fmt += ' {{.Label "com.docker.compose.oneoff"}}'
        out = subprocess.run(
            ["docker", "ps", "-a", "--no-trunc", "--format", fmt],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines()}

    def leftovers(self, before: dict[str, str]) -> list[str]:
        """What a deploy left behind: containers new since ``before`` that no service owns.

        One-offs, the rehearsal's, a failed build step's; and networks of the project that no
        Compose file declares.
        """
        found = [
            labels
            for id_, labels in self.containers().items()
            if id_ not in before and not labels.endswith(f" {PROJECT} False")
        ]
        networks = subprocess.run(
            ["docker", "network", "ls", "--format", "{{.Name}}"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        declared = {f"{PROJECT}_aptos-blue", f"{PROJECT}_aptos-green", f"{PROJECT}_aptos-db"}
        found += [n for n in networks if n.startswith(f"{PROJECT}_") and n not in declared]
        return found

    def lock_free(self) -> bool:
        return DeployLock(self.config.lock_file).running() is None


class ReportReader(HTMLParser):
    """What a person reads in a deploy's HTML report: its sections, fields and chart marks."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.fields: dict[str, str] = {}
        self.marks: dict[str, list[dict[str, str]]] = {}  # chart marks by class, their data-*
        self._field: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "h2" and values.get("id", "").startswith("bluegreen-"):
            self.sections.append(values["id"].removeprefix("bluegreen-"))
        self._field = values.get("data-field") if tag == "td" else None
        if tag in ("rect", "line", "polyline") and "class" in values:
            data = {k.removeprefix("data-"): v for k, v in values.items() if k.startswith("data-")}
            self.marks.setdefault(values["class"], []).append(data)

    def handle_data(self, data: str) -> None:
        if self._field:
            self.fields[self._field] = self.fields.get(self._field, "") + data


def scenario_stack(home: Path, webhook: str) -> Throwaway:
    """The scenarios' stack, its notifications sent to ``webhook``."""
    settings = {"webhooks": [webhook], **NOISY_P99}
    return Throwaway(PROJECT, home, PORTS, env_file="scen.env", settings=settings)


@dataclass
class Users:
    """Locust users on the public URL for a whole scenario: every request they made."""

    host: ScenarioHost
    users: int = 2
    max_seconds: float = 240
    _run: LoadRun | None = None

    def __enter__(self) -> Users:
        cfg = self.host.config
        self._run = LoadRun(
            cfg.public_url,
            self.host.home / "users",
            cfg.ca_file,
            users=self.users,
            user_rps=4,
            paths=("/api/v1/aptos/", "/"),
            max_seconds=self.max_seconds,
        )
        self._run.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._run is not None
        time.sleep(1)  # requests after the scenario's end count too
        self._run.stop()

    @property
    def requests(self) -> int:
        assert self._run is not None
        return len(self._run.samples())

    @property
    def failed(self) -> int:
        assert self._run is not None
        return sum(not s.ok for s in self._run.samples())
