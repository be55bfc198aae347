"""For the gates' tests: one colour on 127.0.0.1 (its statuses, HAProxy's headers), its settings."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

NO_REWRITE_WARNING = ("-W", "ignore::pytest.PytestAssertRewriteWarning", "-p", "no:cacheprovider")


class ColourServer(ThreadingHTTPServer):
    """One colour on 127.0.0.1: the status of each path, and the headers HAProxy would add."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ColourHandler)
        self.colour: str | None = "green"
        self.release = "r2"
        self.statuses = {"/": 200, "/admin/": 302, "/admin/login/": 200, "/api": 200}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ColourHandler(BaseHTTPRequestHandler):
    server: ColourServer

    def do_GET(self) -> None:
        status = self.server.statuses.get(self.path, 404)
        body = b"hello"
        self.send_response(status)
        if status in (301, 302):
            self.send_header("Location", f"{self.path}login/")
        if self.server.colour is not None:
            self.send_header("X-Bluegreen-Colour", self.server.colour)
        self.send_header("X-Bluegreen-Release", self.server.release)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving() -> Iterator[ColourServer]:
    """A running :class:`ColourServer`, shut down at the end."""
    server = ColourServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


SETTINGS = """
compose_files = ["compose.yml"]
tls = "off"
public_host = "127.0.0.1"
critical_paths = ["/", "/admin/", "/api"]
expected_status = {{"/admin/" = 302}}
colour_services = ["web-{{colour}}"]
gate_suites = {gates}
postdeploy_suite = "bluegreen:postdeploy"
{extra}
"""


def project(
    pytester: pytest.Pytester,
    port: int = 1,
    gates: tuple[str, ...] = ("bluegreen:http",),
    extra: str = "",
) -> None:
    """Settings for a stack whose preview routes and public URL are the server on ``port``."""
    pytester.makefile(".yml", compose="services: {}\n")
    pytester.makefile(
        ".toml", bluegreen=SETTINGS.format(gates=json.dumps(list(gates)), extra=extra)
    )
    (pytester.path / ".env").write_text(
        "".join(f"{name}={port}\n" for name in ("PREVIEW_BLUE_PORT", "PREVIEW_GREEN_PORT"))
        + f"PUBLIC_HTTP_PORT={port}\n"
    )
