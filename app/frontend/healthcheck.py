#!/usr/bin/env python3
"""Container health check: exit 0 only when the frontend's /health answers 200."""

import sys
import urllib.error
import urllib.request

URL = "http://127.0.0.1:3000/health"


def main() -> int:
    """Return the process exit status for Docker's HEALTHCHECK."""
    try:
        with urllib.request.urlopen(URL, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
