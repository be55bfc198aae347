"""Plain HTTP checks of one colour, for a rollback's verification and the status command.

The suites do the thorough checking; this is the quick "does it serve" a rollback must prove
without running a pytest session inside a pytest session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from pytest_bluegreen.core.colours import Colour


@dataclass(frozen=True, slots=True)
class Target:
    """A deployment as the suites see it: where it answers and who should answer."""

    url: str
    colour: Colour | None  # None: not known (a standalone run without --bg-expect-colour)
    release: str | None
    ca_file: Path | None
    critical_paths: tuple[str, ...]

    def session(self) -> requests.Session:
        return https_session(self.ca_file)


def https_session(ca_file: Path | None) -> requests.Session:
    """A client that trusts the stack's CA; environment CA bundles and proxies are ignored."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_file) if ca_file else True
    return session


def check_colour_serves(
    base_url: str,
    paths: Sequence[str],
    colour: Colour,
    ca_file: Path | None,
    timeout_s: float = 5.0,
) -> list[str]:
    """Problems found GETting ``paths``: each must answer 200 from ``colour``; [] when all do."""
    problems = []
    with https_session(ca_file) as session:
        for path in paths:
            try:
                response = session.get(base_url + path, timeout=timeout_s)
            except requests.RequestException as exc:
                problems.append(f"{path}: {type(exc).__name__}: {exc}")
                continue
            served_by = response.headers.get("X-Bluegreen-Colour")
            if response.status_code != 200:
                problems.append(f"{path}: HTTP {response.status_code}")
            elif served_by != colour:
                problems.append(f"{path}: answered by {served_by!r}, expected {colour}")
    return problems
