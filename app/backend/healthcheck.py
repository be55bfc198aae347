#!/usr/bin/env python3
"""Container health check: exit 0 only when /api/v1/health answers 200."""

import sys
import urllib.error
import urllib.request

URL = "http://127.0.0.1:8000/api/v1/health"


def main() -> int:
    """Return the process exit status for Docker's HEALTHCHECK."""
    request = urllib.request.Request(URL, headers={"Host": "localhost"})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
