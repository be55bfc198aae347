"""Open-loop HTTPS load with one sample per request, for the switch and rollback benches.

Locust (the deploy's load generator) reports a request's time and outcome, but a switch bench also
needs, per request, which colour answered and on which connection, and the moments the server
closed a keep-alive connection. This small client records exactly that, with nothing between the
socket and the clock but ``http.client``.

One process runs the clients of one kind, each in a thread:

- ``keep-alive``: one HTTP/1.1 connection, reused. A connection counts as closed by the server
  when a response says ``Connection: close``, when it is found closed (readable: EOF or a TLS
  alert) before its next request, or when a request on it fails before any answer; in the last
  case the request is retried once on a new connection, as browsers and urllib3 do for an
  idempotent request on a reused connection.
- ``new-connection``: a new TLS connection per request, sent with ``Connection: close``.

The rate is fixed (open loop): request ``k`` of client ``i`` is due at
``start + (k + i / clients) / per_client_rate``; a request that is due while the previous one is
still running starts as soon as that one ends, and its lag behind the schedule is recorded, so a
slow server or a saturated client shows up instead of silently lowering the rate. Every run is
bounded in time and count. TLS is verified against the stack's CA; no proxy settings are read.

Run by :func:`start_load` (one process per kind); as a script it writes one JSON document:
``{"kind", "samples": [[t, ms, ok, status, colour, client, conn, lag_ms, error], ...],
"closures": [[t, client, conn, how], ...], "connections", "retried", "unsent", "cpu_s",
"wall_s"}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from pytest_bluegreen.core import load_figures as load

KINDS: Final = ("keep-alive", "new-connection")
REQUEST_TIMEOUT_S: Final = 10.0
# A client this far behind its schedule at the end of the run stops; what it did not send is
# counted ("unsent"), so an overloaded server or client bounds the run instead of stretching it.
LATE_STOP_S: Final = 2.0
COLOUR_HEADER: Final = "X-Bluegreen-Colour"


@dataclass(frozen=True, slots=True)
class Sample(load.Sample):
    """One request: what the deploy's load records of it, and its status, connection and lag.

    A :class:`pytest_bluegreen.core.load_figures.Sample`, so the project's own figures take it
    as it is.
    """

    status: int
    client: str
    conn: int
    lag_ms: float
    error: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Sample:
        """A row as one load process writes it: ``[t, ms, ok, status, colour, ...]``."""
        t, ms, ok, status, colour, client, conn, lag_ms, error = row
        return cls(t, ms, ok, colour, status, client, conn, lag_ms, error)


@dataclass(frozen=True, slots=True)
class Closure:
    """A keep-alive connection the server closed, and how it was seen."""

    t: float
    client: str
    conn: int
    how: str  # "connection-close" | "closed-idle" | "disconnect-on-reuse"


@dataclass(slots=True)
class LoadResult:
    """The merged output of every load process of one run."""

    samples: list[Sample] = field(default_factory=list)
    closures: list[Closure] = field(default_factory=list)
    connections: int = 0
    retried: int = 0
    unsent: int = 0  # due before the end, not sent: the client was too far behind
    cpu_s: dict[str, float] = field(default_factory=dict)  # per kind: the process's CPU time
    wall_s: float = 0.0


class _Client:
    """One client thread's connection handling and samples."""

    def __init__(self, name: str, kind: str, host: str, port: int, context: ssl.SSLContext) -> None:
        self.name = name
        self.keep_alive = kind == "keep-alive"
        self.host, self.port, self.context = host, port, context
        self.conn: http.client.HTTPSConnection | None = None
        self.conn_id = 0
        self.samples: list[Sample] = []
        self.closures: list[Closure] = []
        self.retried = 0
        self.unsent = 0

    def _open(self) -> http.client.HTTPSConnection:
        self.conn_id += 1
        return http.client.HTTPSConnection(
            self.host, self.port, timeout=REQUEST_TIMEOUT_S, context=self.context
        )

    def _drop(self, how: str | None) -> None:
        if self.conn is not None:
            if how is not None:
                self.closures.append(Closure(time.time(), self.name, self.conn_id, how))
            self.conn.close()
            self.conn = None

    def _closed_while_idle(self) -> bool:
        """A kept connection with something to read before we asked: EOF or a TLS alert."""
        sock = self.conn.sock if self.conn is not None else None
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _exchange(self, path: str) -> tuple[int, str | None, bool]:
        """One request on the current connection: status, colour, whether the server closes."""
        assert self.conn is not None
        headers = {"Host": "localhost", "User-Agent": "bluegreen-bench"}
        if not self.keep_alive:
            headers["Connection"] = "close"
        self.conn.request("GET", path, headers=headers)
        response = self.conn.getresponse()
        response.read()
        closes = (response.getheader("Connection") or "").lower() == "close" or response.will_close
        return response.status, response.getheader(COLOUR_HEADER), closes

    def request(self, path: str, lag_ms: float) -> None:
        if self.keep_alive and self.conn is not None and self._closed_while_idle():
            self._drop("closed-idle")
        reused = self.conn is not None
        if self.conn is None:
            self.conn = self._open()
        start = time.time()
        t0 = time.perf_counter()
        status, colour, error, closes = 0, None, None, True
        try:
            try:
                status, colour, closes = self._exchange(path)
            except (http.client.BadStatusLine, ConnectionError, ssl.SSLError):
                if not reused:
                    raise
                # The server closed the reused connection before answering: count it, and
                # retry once on a new connection (what clients do for an idempotent request).
                self._drop("disconnect-on-reuse")
                self.retried += 1
                self.conn = self._open()
                status, colour, closes = self._exchange(path)
        except (http.client.HTTPException, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        ms = (time.perf_counter() - t0) * 1000
        self.samples.append(
            Sample(
                t=start,
                ms=round(ms, 3),
                ok=error is None and status == 200,
                status=status,
                colour=colour,
                client=self.name,
                conn=self.conn_id,
                lag_ms=round(lag_ms, 3),
                error=error or (None if status == 200 else f"HTTP {status}"),
            )
        )
        if error is not None:
            self._drop(None)
        elif closes:
            self._drop("connection-close" if self.keep_alive else None)


def _run_client(
    client: _Client,
    paths: Sequence[str],
    start_at: float,
    offset_s: float,
    rate: float,
    seconds: float,
) -> None:
    """Requests at ``rate`` from ``start_at + offset_s`` until ``start_at + seconds`` (bounded)."""
    count = math.ceil(seconds * rate)
    for k in range(count):
        due = start_at + offset_s + k / rate
        if due >= start_at + seconds:
            break
        if time.time() > start_at + seconds + LATE_STOP_S:  # far behind: stop, count the rest
            client.unsent = sum(
                1 for j in range(k, count) if start_at + offset_s + j / rate < start_at + seconds
            )
            break
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        client.request(paths[k % len(paths)], max(0.0, -wait) * 1000)
    client._drop(None)


def run_kind(
    kind: str,
    clients: int,
    rate: float,
    host: str,
    port: int,
    ca_file: Path,
    paths: Sequence[str],
    start_at: float,
    seconds: float,
) -> dict[str, Any]:
    """Run ``clients`` threads of ``kind`` sharing ``rate``; the JSON document of the module."""
    context = ssl.create_default_context(cafile=str(ca_file))
    per_client = rate / clients
    workers = [_Client(f"{kind[0]}{i}", kind, host, port, context) for i in range(clients)]
    threads = [
        threading.Thread(
            target=_run_client,
            args=(c, paths, start_at, i / clients / per_client, per_client, seconds),
            daemon=True,
        )
        for i, c in enumerate(workers)
    ]
    wall0, cpu0 = time.time(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, start_at + seconds - time.time()) + 2 * REQUEST_TIMEOUT_S)
    return {
        "kind": kind,
        "samples": [
            [s.t, s.ms, s.ok, s.status, s.colour, s.client, s.conn, s.lag_ms, s.error]
            for c in workers
            for s in c.samples
        ],
        "closures": [[x.t, x.client, x.conn, x.how] for c in workers for x in c.closures],
        "connections": sum(c.conn_id for c in workers),
        "retried": sum(c.retried for c in workers),
        "unsent": sum(c.unsent for c in workers),
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.time() - wall0,
        "unfinished_clients": sum(t.is_alive() for t in threads),
    }


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """The load of one run: where, how many clients of each kind, how fast, how long."""

    port: int
    ca_file: Path
    rate: float  # requests per second, all clients together
    seconds: float
    keep_alive_clients: int = 8
    new_connection_clients: int = 4
    paths: tuple[str, ...] = ("/health",)
    host: str = "127.0.0.1"


class RunningLoad:
    """The load processes of one run; :meth:`wait` collects their samples."""

    def __init__(self, plan: LoadPlan, workdir: Path, lead_s: float = 1.5) -> None:
        self.plan = plan
        self.start_at = time.time() + lead_s
        self.end_at = self.start_at + plan.seconds
        self._procs: list[tuple[subprocess.Popen[bytes], Path, IO[bytes]]] = []
        workdir.mkdir(parents=True, exist_ok=True)
        clients = plan.keep_alive_clients + plan.new_connection_clients
        for kind, count in zip(
            KINDS, (plan.keep_alive_clients, plan.new_connection_clients), strict=True
        ):
            if count == 0:
                continue
            out = workdir / f"load-{kind}-{time.time_ns()}.json"
            argv = [sys.executable, __file__, "--kind", kind, "--clients", str(count)]
            argv += ["--rate", str(plan.rate * count / clients), "--host", plan.host]
            argv += ["--port", str(plan.port), "--ca", str(plan.ca_file)]
            argv += ["--start-at", repr(self.start_at), "--seconds", str(plan.seconds)]
            argv += ["--out", str(out), *(a for p in plan.paths for a in ("--path", p))]
            errors = open(out.with_suffix(".err"), "wb")  # noqa: SIM115 (closed in wait)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errors, stderr=errors)
            self._procs.append((proc, out, errors))

    def wait(self) -> LoadResult:
        """Wait (bounded) for every load process; merge their output."""
        result = LoadResult(wall_s=self.plan.seconds)
        deadline = self.end_at + LATE_STOP_S + 2 * REQUEST_TIMEOUT_S + 5
        problems = []
        for proc, out, errors in self._procs:
            try:
                proc.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            errors.close()
            if proc.returncode != 0 or not out.is_file():
                message = out.with_suffix(".err").read_text(errors="replace")[-2000:]
                problems.append(f"load process exited {proc.returncode}: {message}")
                continue
            data = json.loads(out.read_text(encoding="utf-8"))
            result.samples += [Sample.from_row(row) for row in data["samples"]]
            result.closures += [Closure(*row) for row in data["closures"]]
            result.connections += data["connections"]
            result.retried += data["retried"]
            result.unsent += data["unsent"]
            result.cpu_s[data["kind"]] = round(data["cpu_s"], 3)
            out.unlink()
            out.with_suffix(".err").unlink(missing_ok=True)
        self._procs = []
        if problems:
            raise RuntimeError("; ".join(problems))
        result.samples.sort(key=lambda s: s.t)
        return result

    def kill(self) -> None:
        """Stop every load process now (on an error or Ctrl-C)."""
        for proc, _, errors in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            errors.close()
        self._procs = []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="req/s, all clients together")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", type=Path, required=True)
    parser.add_argument("--path", action="append", dest="paths")
    parser.add_argument("--start-at", type=float, default=0.0, help="epoch seconds")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        os.environ.pop(key, None)  # http.client ignores them; be explicit anyway
    socket.setdefaulttimeout(REQUEST_TIMEOUT_S)
    doc = run_kind(
        args.kind,
        args.clients,
        args.rate,
        args.host,
        args.port,
        args.ca,
        args.paths or ["/health"],
        args.start_at or time.time() + 0.2,
        args.seconds,
    )
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
