"""A stand-in for HAProxy's admin socket, for unit tests of our own router logic only.

It answers the few runtime API commands the router sends, one command per connection, the way
HAProxy's non-interactive mode does. The real HAProxy is exercised by the integration tests.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

STAT_HEADER = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,"
    "wretr,wredis,status"
)


class FakeRuntimeAPI:
    def __init__(self, path: Path, map_name: str, colour: str = "blue") -> None:
        self.path = path
        self.map_name = map_name
        self.colour = colour
        self.status = {"api_blue": "UP", "web_blue": "UP", "api_green": "UP", "web_green": "UP"}
        self.sessions = {name: 0 for name in self.status}
        self.commands: list[str] = []
        self.lines: list[str] = []  # one per connection: a round trip, maybe several commands
        self.refuse_set_map = False
        # The releases map, when its configuration reads one (None: "Unknown map identifier").
        self.releases: dict[str, str] | None = None
        self.releases_name = map_name.rpartition("/")[0] + "/releases.map"
        self._closing = False
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        # A closed listening socket does not wake accept() on Linux: connect once to wake it.
        self._closing = True
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
            wake.connect(str(self.path))
        self._thread.join(timeout=2)
        self._server.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            if self._closing:
                conn.close()
                return
            with conn:
                line = conn.recv(4096).decode().strip()
                self.lines.append(line)
                answers = []
                for command in line.split(";"):  # several commands in one line, as HAProxy
                    self.commands.append(command)
                    answers.append(ended(self.answer(command)))
                conn.sendall("".join(answers).encode())

    def answer(self, command: str) -> str:
        words = command.split()
        if words[1:3] == ["map", self.releases_name] and words[0] in ("set", "add"):
            if self.releases is None:
                return "Unknown map identifier. Please use #<id> or <file>.\n"
            if words[0] == "set" and words[3] not in self.releases:
                return "entry not found.\n"
            self.releases[words[3]] = words[4]
            return "\n"
        if words[:2] == ["show", "map"] and words[2:] == [self.map_name]:
            return f"0x5581 active {self.colour}\n\n"
        if words[:2] == ["set", "map"] and len(words) == 5 and words[2] == self.map_name:
            if self.refuse_set_map:
                return "entry not found.\n"
            self.colour = words[4]
            return "\n"
        if command in ("show stat", "show stat -1 4 -1"):
            servers_only = command != "show stat"
            rows = [STAT_HEADER]
            for backend, status in self.status.items():
                server = ("backend-" if backend.startswith("api") else "frontend-") + backend[4:]
                if not servers_only:
                    rows.append("public_https,FRONTEND,,,0,1,4096,5,,,,,,,,,,OPEN")
                rows.append(
                    f"{backend},{server},0,0,{self.sessions[backend]},1,,9,,,,,,,,0,0,{status}"
                )
                if not servers_only:
                    rows.append(f"{backend},BACKEND,0,0,0,1,410,9,,,,,,,,0,0,{status}")
            return "\n".join(rows) + "\n\n"
        if words[:3] == ["shutdown", "sessions", "server"] and len(words) == 4:
            backend = words[3].partition("/")[0]
            if backend not in self.sessions:
                return "No such backend.\n"
            self.sessions[backend] = 0
            return "\n"
        return "Unknown command.\n"


def ended(answer: str) -> str:
    """Every answer ends with an empty line, as HAProxy's do (an empty answer is that line)."""
    return answer if answer == "\n" or answer.endswith("\n\n") else answer + "\n"
