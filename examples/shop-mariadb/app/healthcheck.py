#!/usr/bin/env python3
"""Container health check.

``healthcheck.py``: exit 0 only when the API's ``/health`` answers 200.
``healthcheck.py worker``: exit 0 only when the worker polled the database in the last 30 s.
"""

import os
import sys
import time
import urllib.error
import urllib.request

URL = "http://127.0.0.1:8000/health"
WORKER_HEARTBEAT = "/tmp/worker-heartbeat"
WORKER_MAX_AGE_S = 30


def api() -> int:
    try:
        with urllib.request.urlopen(URL, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


def worker() -> int:
    try:
        age = time.time() - os.stat(WORKER_HEARTBEAT).st_mtime
    except OSError as exc:
        print(f"unhealthy: no heartbeat yet ({exc.strerror})", file=sys.stderr)
        return 1
    if age > WORKER_MAX_AGE_S:
        print(f"unhealthy: last heartbeat {age:.0f} s ago", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(worker() if sys.argv[1:] == ["worker"] else api())
