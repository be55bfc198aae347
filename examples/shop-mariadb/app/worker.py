#!/usr/bin/env python3
"""The shop's worker: takes the pending jobs from the ``jobs`` table, one at a time, and does them.

A "fulfil" job marks its order fulfilled. Several workers may run at once: each claims its job
with ``FOR UPDATE SKIP LOCKED``. A job left "running" by a worker that died is taken again after
``STALE_MINUTES``. On SIGTERM the worker finishes the job in hand, then exits with status 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import database
import pymysql

POLL_S = float(os.environ.get("WORKER_POLL_SECONDS", "1"))
# How long a job's work takes (stands in for calling a warehouse, sending mail...).
JOB_S = float(os.environ.get("WORKER_JOB_SECONDS", "0.5"))
RETRY_S = 5.0
STALE_MINUTES = 5
# Touched after every poll of the database; healthcheck.py's "worker" check reads its age.
HEARTBEAT = Path("/tmp/worker-heartbeat")

stopping = threading.Event()


def log(message: str) -> None:
    print(f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} {message}", flush=True)


def claim(connection: pymysql.connections.Connection) -> dict[str, Any] | None:
    """The next job, marked running in the database; None when there is none."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, kind, order_id FROM jobs"
            " WHERE status = 'pending'"
            "    OR (status = 'running' AND started_at < NOW(6) - INTERVAL %s MINUTE)"
            " ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
            (STALE_MINUTES,),
        )
        job = cursor.fetchone()
        if job is not None:
            cursor.execute(
                "UPDATE jobs SET status = 'running', started_at = NOW(6), attempts = attempts + 1"
                " WHERE id = %s",
                (job["id"],),
            )
    # Also when there was no job: the next poll must see the jobs committed since.
    connection.commit()
    return job


def work(connection: pymysql.connections.Connection, job: dict[str, Any]) -> None:
    time.sleep(JOB_S)
    with connection.cursor() as cursor:
        if job["kind"] == "fulfil":
            cursor.execute(
                "UPDATE orders SET status = 'fulfilled' WHERE id = %s", (job["order_id"],)
            )
            status = "done"
        else:
            status = "failed"
        cursor.execute(
            "UPDATE jobs SET status = %s, finished_at = NOW(6) WHERE id = %s",
            (status, job["id"]),
        )
    connection.commit()
    log(f"job {job['id']} ({job['kind']} order {job['order_id']}): {status}")


def run() -> None:
    connection = None
    while not stopping.is_set():
        try:
            if connection is None:
                connection = database.connect()
            job = claim(connection)
            HEARTBEAT.touch()
            if job is None:
                stopping.wait(POLL_S)
            else:
                work(connection, job)
        except pymysql.MySQLError as exc:
            log(f"database error: {exc}; trying again in {RETRY_S:g} s")
            close(connection)
            connection = None
            stopping.wait(RETRY_S)
    close(connection)


def close(connection: pymysql.connections.Connection | None) -> None:
    # pymysql raises when the connection is already closed (as after a lost connection).
    if connection is not None:
        with contextlib.suppress(pymysql.MySQLError):
            connection.close()


def main() -> int:
    def stop(signum: int, frame: object) -> None:
        log(f"{signal.Signals(signum).name} received, stopping after the current job")
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"polling for jobs every {POLL_S:g} s")
    run()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
