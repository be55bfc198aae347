"""The swarm bench's web service: every GET answers 200 with this image's version.

The version is in the ``X-Bluegreen-Colour`` header, which the bench's load generator reads as
"who answered" (here a release, v1 or v2, not a colour). HTTP/1.1 keep-alive, a thread per
connection. On SIGTERM it stops as a well-behaved app does: no new connections, answers the
requests in flight (with ``Connection: close``), then exits (at most 5 s later).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

VERSION = os.environ.get("APP_VERSION", "v1")
BODY = f"{VERSION} {socket.gethostname()}\n".encode()
stopping = threading.Event()
lock = threading.Lock()
in_flight = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm and the peer's
    # delayed ACK hold the body back 40 ms now and then (a p99 of ~47 ms that is no switch's).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        global in_flight
        with lock:
            in_flight += 1
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(BODY)))
            self.send_header("X-Bluegreen-Colour", VERSION)
            if stopping.is_set():
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(BODY)
        finally:
            with lock:
                in_flight -= 1

    def log_message(self, format: str, *args: object) -> None:
        return


def main() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", 8000), Handler)
    server.daemon_threads = True

    def stop() -> None:
        server.shutdown()  # no new connections from here on
        deadline = time.monotonic() + 5
        while in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(0)

    def on_term(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        threading.Thread(target=stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    threading.Event().wait(6)  # stop() ends the process


if __name__ == "__main__":
    main()
