"""The reference stack's shape, for unit tests that drive its services by name."""

from __future__ import annotations

from typing import Any

REFERENCE: dict[str, Any] = {
    "project_name": "aptos",
    "colour_services": ("backend-{colour}", "frontend-{colour}"),
    "router_backends": ("api_{colour}", "web_{colour}"),
    "database": "postgres",
    "migrate_service": "backend-{colour}",
    "migrate_command": ("python3", "manage.py", "migrate", "--noinput"),
}
