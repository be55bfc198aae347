from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.swarm.cluster import SwarmCluster, start_cluster


@pytest.fixture(scope="session")
def swarm_cluster() -> Iterator[SwarmCluster]:
    """A ready swarm of one manager and two workers (Docker-in-Docker nodes on this machine).

    A healthy cluster already running is reused and left running; one this session made is
    removed at its end.
    """
    cluster = start_cluster(progress=lambda line: print(line, flush=True))
    yield cluster
    if not cluster.reused:
        cluster.teardown()
