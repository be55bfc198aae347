"""One stack and one notification receiver for every scenario and security check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenarios.harness import ScenarioHost, Webhook, scenario_stack
from tests.harness import REPO, short_home, throwaway_stack
from tests.images import ThrowawayImages


def write_summary(rows: list[dict[str, object]], path: Path) -> None:
    """The scenarios that passed, their results and the users' requests, as JSON and a table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nscenarios survived: {len(rows)} (written to {path})")
    for row in rows:
        print(
            f"  {row['scenario']:24} {row['result']:12} users: {row['user_requests_failed']} "
            f"of {row['user_requests']} requests failed, rows lost: {row['rows_lost']}"
        )


@pytest.fixture(scope="session")
def webhook() -> Iterator[Webhook]:
    receiver = Webhook()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def host(webhook: Webhook, throwaway_images: ThrowawayImages) -> Iterator[ScenarioHost]:
    """The stack after a first deploy, with data; removed afterwards."""
    with short_home("bgscn-") as home:
        throwaway = scenario_stack(home, webhook.url)
        with throwaway_stack(throwaway, images=throwaway_images) as stack:
            host = ScenarioHost(throwaway, stack)
            first = host.start_deploy("scn-initial")
            first.start_reading([])
            output = first.wait()
            assert first.proc.returncode == 0, output[-4000:]
            host.outputs.append(output)
            yield host
            write_summary(host.survived, REPO / "reports" / "scenarios.json")
