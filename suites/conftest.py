"""Fixtures shared by the reference stack's suites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from pytest_bluegreen import Target


@pytest.fixture
def http(bluegreen_target: Target) -> Iterator[requests.Session]:
    """A keep-alive HTTPS client for the target, trusting the stack's own CA."""
    with bluegreen_target.session() as session:
        yield session
