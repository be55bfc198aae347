"""A deploy's outputs in one place: event log, webhooks and metrics under one secret policy.

This is :class:`pytest_bluegreen.core.ports.Outputs` for the deployment: the core says what
happened; what is written, sent and masked is decided here.
"""

from __future__ import annotations

from typing import Any

from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.ports import NotificationKind
from pytest_bluegreen.core.record import DeployRecord
from pytest_bluegreen.reporting import metrics
from pytest_bluegreen.reporting.events import EventLog
from pytest_bluegreen.reporting.notify import Notifier
from pytest_bluegreen.reporting.secrets import SecretPolicy


class DeployOutputs:
    """The event log, the webhooks and the metrics of one deploy."""

    def __init__(self, config: StackConfig, deploy_id: str) -> None:
        self.config = config
        self.policy = SecretPolicy.for_config(config)
        self.events = EventLog(config.log_file, deploy_id, self.policy)
        self.notifier = Notifier(
            config.reporting.webhooks,
            style="slack" if config.reporting.webhook_style == "slack" else "json",
            secrets=self.policy,
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.policy.values

    def refresh_secrets(self) -> None:
        """Read the stack's environment again: a first deploy has just written its env file."""
        self.policy = self.policy.refreshed(self.config)
        self.events.secrets = self.notifier.secrets = self.policy

    def mask(self, text: str) -> str:
        return self.policy.redact(text)

    def mask_json(self, value: Any) -> Any:
        return self.policy.mask_json(value)

    def emit(self, event: str, **fields: Any) -> None:
        self.events.emit(event, **fields)

    def notify(self, kind: NotificationKind, record: DeployRecord) -> list[str]:
        """Send the news of ``record``; what could not be delivered, one line each."""
        return [
            f"notification to {failure.url} failed: {failure.error}"
            for failure in self.notifier.notify(kind, record)
        ]

    def publish_metrics(self, record: DeployRecord) -> list[str]:
        return metrics.publish(self.config, record, self.policy)

    def close(self) -> None:
        self.events.close()
        self.notifier.close()
