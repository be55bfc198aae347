"""Assertions shared by the reference stack's suites."""

from __future__ import annotations

import requests

from pytest_bluegreen import Target

# The endpoints the design document checks; the reference app serves all of them (the same list
# as critical_paths in this repository's settings).
DESIGN_CRITICAL_PATHS = (
    "/",
    "/aptos",
    "/builders",
    "/api/v1/aptos/",
    "/api/v1/builders/",
    "/admin/",
    "/health",
    "/api/v1/health",
)


def assert_served_by(response: requests.Response, target: Target) -> None:
    """The colour and release the target should serve answered, nobody else."""
    if target.colour is not None:
        assert response.headers.get("X-Bluegreen-Colour") == target.colour, (
            f"{response.url} answered by colour {response.headers.get('X-Bluegreen-Colour')!r}, "
            f"expected {target.colour}"
        )
    if target.release is not None:
        assert response.headers.get("X-Bluegreen-Release") == target.release, (
            f"{response.url} answered by release {response.headers.get('X-Bluegreen-Release')!r}, "
            f"expected {target.release}"
        )
