"""How a run ends, whatever ended it: a deploy done or aborted, its rollback, a manual rollback.

One home for what every end writes, so that a deploy's rollback and ``bluegreen rollback`` tell
the outside the same things in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pytest_bluegreen.core.ports import NotificationKind, Outputs, Stack
from pytest_bluegreen.core.record import DeployRecord, RecordStore

# (event, message): a problem that must not fail the run, said on screen and in the event log.
Warn = Callable[[str, str], None]

_NOTIFICATIONS: dict[str, NotificationKind] = {"deployed": "success", "rolled_back": "rollback"}


def tell_end(record: DeployRecord, records: RecordStore, outputs: Outputs, warn: Warn) -> None:
    """The record saved, ``deploy.end`` in the event log, the metrics, then the notification.

    Metrics and webhooks that fail are warned about, never raised: the run's outcome stands.
    """
    records.save(record)
    outputs.emit("deploy.end", result=record.result, error=record.error)
    for problem in outputs.publish_metrics(record):
        warn("metrics.failed", f"metrics not published: {problem}")
    for failure in outputs.notify(_NOTIFICATIONS.get(record.result, "failure"), record):
        warn("notify.failed", failure)


def failed_logs(
    stack: Stack, services: Iterable[str], mask: Callable[[str], str], lines: int = 60
) -> dict[str, Any]:
    """The last lines of a failed colour's services, secrets masked: read before they stop."""
    logs: dict[str, Any] = {}
    for service in services:
        for container in stack.container_ids(service):
            logs[service] = mask(stack.logs(container, tail=lines))
    return logs
