"""Plain HTTP checks of one colour: a rollback's verification, the http and post-deploy gates.

The suites do the thorough checking; this is the quick "does it serve" a rollback must prove
without running a pytest session inside a pytest session, and what the packaged gates check of
every critical path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    colour: Colour | None,
    ca_file: Path | None,
    timeout_s: float = 5.0,
    *,
    release: str | None = None,
    expected_status: Mapping[str, int] | None = None,
) -> list[str]:
    """Problems found GETting ``paths`` from ``colour`` and ``release``; [] when all serve.

    Each path must answer its status in ``expected_status``, judged on its own answer (a
    redirect not followed), or else end in 200 (redirects followed). The colour and release are
    those of the ``X-Bluegreen-Colour`` and ``X-Bluegreen-Release`` headers HAProxy adds; None
    checks nothing.
    """
    expected = expected_status or {}
    problems = []
    with https_session(ca_file) as session:
        for path in paths:
            try:
                response = session.get(
                    base_url + path, timeout=timeout_s, allow_redirects=path not in expected
                )
            except (requests.RequestException, OSError) as exc:  # OSError: the CA file is gone
                problems.append(f"{path}: {type(exc).__name__}: {exc}")
                continue
            problem = served_problem(response, expected.get(path, 200), colour, release)
            if problem:
                problems.append(f"{path}: {problem}")
    return problems


def served_problem(
    response: requests.Response, status: int, colour: Colour | None, release: str | None
) -> str | None:
    """What is wrong with one answer: its status, or who answered it; None when all is right."""
    if response.status_code != status:
        return f"HTTP {response.status_code}, expected {status}"
    for what, want in (("colour", colour), ("release", release)):
        have = response.headers.get(f"X-Bluegreen-{what.title()}")
        if want is not None and have != want:
            return f"answered by {what} {have!r}, expected {want}"
    return None
