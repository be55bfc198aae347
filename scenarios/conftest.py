"""One stack and one notification receiver for every scenario and security check."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenarios.harness import ScenarioHost, Webhook, make_host


@pytest.fixture(scope="session")
def webhook() -> Iterator[Webhook]:
    receiver = Webhook()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def host(webhook: Webhook) -> Iterator[ScenarioHost]:
    """The stack after a first deploy, with data; removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="bgscn-"))
    host = make_host(home, webhook.url)
    host.stack.down(volumes=True)
    first = host.start_deploy("scn-initial")
    first.start_reading([])
    output = first.wait()
    assert first.proc.returncode == 0, output[-4000:]
    host.outputs.append(output)
    yield host
    host.stack.down(volumes=True)
    shutil.rmtree(home, ignore_errors=True)
