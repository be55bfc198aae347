"""Bad input on a real engine: a clear error, and nothing half-started left behind."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_bluegreen.adapters.engines.compose import ComposeStack
from pytest_bluegreen.core.errors import StackError
from tests.images import ThrowawayImages
from tests.integration.conftest import REPO, make_config, progress

# Ports of their own: a stack deployed with the defaults may run on this machine (it holds
# 80 and 443), and a taken port is refused before the checks these tests are about.
PORTS = {
    "PUBLIC_BIND": "127.0.0.1",
    "PUBLIC_HTTP_PORT": "17080",
    "PUBLIC_HTTPS_PORT": "17443",
    "PREVIEW_BLUE_PORT": "17441",
    "PREVIEW_GREEN_PORT": "17442",
    "STATS_PORT": "17404",
}


def project_leftovers(project: str) -> dict[str, list[str]]:
    """Containers and networks Docker still holds for a Compose project."""
    label = f"label=com.docker.compose.project={project}"
    found = {}
    for kind, argv in {
        "containers": ["docker", "ps", "-a", "-q", "--filter", label],
        "networks": ["docker", "network", "ls", "-q", "--filter", label],
    }.items():
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        found[kind] = out.split()
    return found


@pytest.fixture
def home(throwaway_images: ThrowawayImages) -> Iterator[Path]:
    throwaway_images.add("bgbrokenlb")
    throwaway_images.add("bgcrash")
    path = Path(tempfile.mkdtemp(prefix="bgbad-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_broken_haproxy_config_starts_nothing(home: Path) -> None:
    broken = home / "haproxy.cfg"
    good = (REPO / "haproxy" / "haproxy.cfg").read_text()
    broken.write_text(good.replace("    mode http\n", "    mode http\n    stats admin if TRUE\n"))
    override = home / "broken-haproxy.yml"
    override.write_text(
        "services:\n"
        "  loadbalancer:\n"
        "    volumes:\n"
        f"      - {broken}:/usr/local/etc/haproxy/haproxy.cfg:ro\n"
    )
    stack = ComposeStack(
        make_config("bgbrokenlb", home, [override], ports=PORTS), progress=progress
    )
    try:
        with pytest.raises(StackError, match="HAProxy rejects its configuration") as failure:
            stack.up(("blue",))
        assert "stats admin" in str(failure.value)
        assert project_leftovers("bgbrokenlb") == {"containers": [], "networks": []}
    finally:
        stack.down(volumes=True)


def test_a_colour_that_crashes_is_removed_with_its_logs_reported(home: Path) -> None:
    override = home / "crashing-backend.yml"
    override.write_text(
        "services:\n"
        "  backend-blue:\n"
        '    command: ["python3", "-c", "import sys; print(\'release is broken\'); sys.exit(3)"]\n'
    )
    stack = ComposeStack(make_config("bgcrash", home, [override], ports=PORTS), progress=progress)
    try:
        with pytest.raises(
            StackError, match=r"backend-blue is (exited|restarting) \(exit code 3\)"
        ) as failure:
            stack.up(("blue",))
        assert "release is broken" in str(failure.value)
        assert project_leftovers("bgcrash") == {"containers": [], "networks": []}
    finally:
        stack.down(volumes=True)
