"""Project-wide pytest settings for this repository's own runs.

``tests/`` holds the plugin's tests (``tests/integration`` and ``scenarios/`` need Docker and are
marked ``integration`` here, so that ``-m "not integration"`` runs the fast tests alone);
``suites/`` holds the reference stack's deploy suites, run by ``pytest --bg-deploy``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images import ThrowawayImages

ROOT = Path(__file__).parent
NEEDS_DOCKER = (ROOT / "tests" / "integration", ROOT / "scenarios")

collect_ignore = ["app"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.path.is_relative_to(folder) for folder in NEEDS_DOCKER):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def throwaway_images() -> Iterator[ThrowawayImages]:
    """Register a throwaway stack's images here; they are removed at the session's end."""
    images = ThrowawayImages()
    yield images
    images.remove()
