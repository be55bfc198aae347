"""Webhooks: deploy news to chat or any JSON endpoint, secrets masked, never raising.

A notification that cannot be delivered is reported to the caller: the deploy matters more.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit

import requests

from pytest_bluegreen.core.record import DeployRecord
from pytest_bluegreen.reporting.secrets import SecretPolicy

NotificationKind = Literal["start", "success", "failure", "rollback"]


NOTIFICATION_KINDS: Final[tuple[NotificationKind, ...]] = (
    "start",
    "success",
    "failure",
    "rollback",
)


WebhookStyle = Literal["json", "slack"]


WEBHOOK_STYLES: Final[tuple[WebhookStyle, ...]] = ("json", "slack")


DELIVERY_ATTEMPTS: Final = 2  # one retry: a webhook blip should not lose the news


_SUMMARY_REASON_CHARS: Final = 160


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    url: str  # with any userinfo/query token redacted for display
    error: str


def _seconds(value: float | None) -> str:
    """``41.2s``; under 0.1 s in milliseconds, since a rollback often takes a few."""
    if value is None:
        return "?"
    return f"{value:.1f}s" if value >= 0.1 else f"{value * 1000:.0f}ms"


def _failure_reason(record: DeployRecord) -> str:
    """The first failed stage and its message, else the record's error: one short line."""
    failed = next((s for s in record.stages if s.outcome in ("failed", "error")), None)
    if failed is not None:
        reason = f"{failed.name} failed" + (f": {failed.message}" if failed.message else "")
    else:
        reason = record.error or ""
    reason = " ".join(reason.split())
    if len(reason) > _SUMMARY_REASON_CHARS:
        reason = reason[: _SUMMARY_REASON_CHARS - 3] + "..."
    return reason


def summary_line(kind: NotificationKind, record: DeployRecord) -> str:
    """E.g. ``deploy 20261129T001503Z-ab12cd release r42 blue→green: deployed in 41.2s``."""
    if record.to_colour is None:
        route = "(colours not yet known)"
    elif record.from_colour is None:
        route = f"to {record.to_colour} (first deploy)"
    else:
        route = f"{record.from_colour}→{record.to_colour}"
    reason = _failure_reason(record)
    if kind == "start":
        outcome = "started"
    elif record.result == "deployed":
        outcome = f"deployed in {_seconds(record.duration_s)}"
    elif record.result == "rolled_back":
        outcome = f"rolled back after {reason or 'a failure'}"
        if record.rollback_s is not None:
            outcome += f" (rollback {_seconds(record.rollback_s)})"
    elif record.result in ("aborted", "interrupted"):
        outcome = record.result
        if record.duration_s is not None:
            outcome += f" after {_seconds(record.duration_s)}"
        if reason:
            outcome += f": {reason}"
    elif kind == "rollback":  # still running: the rollback is under way
        outcome = f"rolling back after {reason or 'a failure'}"
    elif kind == "failure":
        outcome = f"failed: {reason or 'unknown reason'}"
    else:
        outcome = "succeeded"
    return f"deploy {record.id} release {record.release} {route}: {outcome}"


def _url_credentials(url: str) -> list[str]:
    """The parts of ``url`` that may be credentials, raw and decoded, to redact from errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [parts.query, parts.fragment]
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        found += [userinfo, *userinfo.split(":", 1)]
    for item in parts.query.split("&"):
        found.append(item.partition("=")[2])
    return found + [unquote(value) for value in found]


def _escape_slack(text: str) -> str:
    """Slack reads ``&``, ``<`` and ``>`` as markup; these three are all it asks to escape."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost error under requests' and urllib3's wrappers (e.g. ConnectionRefusedError)."""
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        inner = current.__cause__ or current.__context__ or getattr(current, "reason", None)
        if inner is None and current.args and isinstance(current.args[0], BaseException):
            inner = current.args[0]
        if not isinstance(inner, BaseException):
            break
        current = inner
    return current


class Notifier:
    """POSTs deploy news to webhooks; returns what could not be delivered instead of raising.

    Its own session ignores the environment (``trust_env = False``): proxy and CA variables meant
    for the internet must not reroute a webhook on the same host. ``secrets``: a
    :class:`SecretPolicy` (or bare values), applied to every payload and every error shown; it may
    be replaced (``notifier.secrets = policy``).
    """

    def __init__(
        self,
        urls: Sequence[str],
        style: WebhookStyle = "json",
        timeout_s: float = 5.0,
        secrets: Iterable[str] = (),
        session: requests.Session | None = None,
        retry_pause_s: float = 0.5,
    ) -> None:
        if isinstance(urls, str):
            raise TypeError("urls must be a sequence of URLs, not one string")
        if style not in WEBHOOK_STYLES:
            raise ValueError(f"webhook style {style!r} is not one of {', '.join(WEBHOOK_STYLES)}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, not {timeout_s}")
        self.urls = tuple(urls)
        self.style = style
        self.timeout_s = timeout_s
        self.retry_pause_s = retry_pause_s
        self.policy = SecretPolicy.of(secrets)
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            session.trust_env = False
        self._session = session

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values masked in every payload."""
        return self.policy.values

    @secrets.setter
    def secrets(self, secrets: Iterable[str]) -> None:
        self.policy = SecretPolicy.of(secrets)

    def notify(self, kind: NotificationKind, record: DeployRecord) -> list[DeliveryFailure]:
        """Deliver to every URL in turn; an empty list means every webhook took it."""
        if kind not in NOTIFICATION_KINDS:
            raise ValueError(f"notification kind {kind!r} is not one of {NOTIFICATION_KINDS}")
        if not self.urls:
            return []
        body = json.dumps(self.payload(kind, record)).encode()
        failures = [self._deliver(url, body) for url in self.urls]
        return [failure for failure in failures if failure is not None]

    def payload(self, kind: NotificationKind, record: DeployRecord) -> dict[str, Any]:
        """What is POSTed, secrets already redacted."""
        summary = summary_line(kind, record)
        if self.style == "slack":
            message = self._slack_message(summary, record)
        else:
            message = {"kind": kind, "deploy": record.to_dict(), "summary": summary}
        cleaned: dict[str, Any] = self.policy.mask_json(message)
        return cleaned

    def _slack_message(self, summary: str, record: DeployRecord) -> dict[str, Any]:
        # Redact before escaping: an escaped secret ("a&b" -> "a&amp;b") would no longer match.
        def text(value: str) -> str:
            return _escape_slack(self.policy.redact(value))

        route = f"{record.from_colour or '(none)'} → {record.to_colour}"
        facts = [
            ("Release", record.release),
            ("Colours", route),
            ("Result", record.result),
            ("Duration", _seconds(record.duration_s)),
        ]
        return {
            "text": text(summary),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": text(summary)}},
                {
                    "type": "section",
                    "fields": [
                        {"type": "mrkdwn", "text": f"*{name}*\n{text(value)}"}
                        for name, value in facts
                    ],
                },
                {
                    "type": "context",
                    "elements": [
                        {"type": "mrkdwn", "text": text(f"{record.id} on {record.hostname}")}
                    ],
                },
            ],
        }

    def _deliver(self, url: str, body: bytes) -> DeliveryFailure | None:
        shown = self.policy.display_url(url)
        try:
            scheme = urlsplit(url).scheme.lower()
        except ValueError as exc:
            return DeliveryFailure(shown, f"invalid URL: {exc}")
        if scheme not in ("http", "https"):
            return DeliveryFailure(shown, f"unsupported URL scheme {scheme!r}; use http or https")
        problem = ""
        for attempt in range(DELIVERY_ATTEMPTS):
            if attempt:
                time.sleep(self.retry_pause_s)
            outcome = self._post(url, body)
            if outcome is None:
                return None
            problem = outcome
        error = f"{problem} (after {DELIVERY_ATTEMPTS} attempts)"
        return DeliveryFailure(shown, self.policy.with_values(_url_credentials(url)).redact(error))

    def _post(self, url: str, body: bytes) -> str | None:
        """None when the webhook took it, else what went wrong."""
        try:
            # No redirects: a POST turned into a GET elsewhere is no delivery, and the payload
            # should not travel to a host nobody configured.
            with self._session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self.timeout_s,
                allow_redirects=False,
                stream=True,
            ) as response:
                if 200 <= response.status_code < 300:
                    return None
                excerpt = next(response.iter_content(300), b"").decode("utf-8", "replace")
                excerpt = " ".join(excerpt.split())
                return f"HTTP {response.status_code} {response.reason}" + (
                    f": {excerpt}" if excerpt else ""
                )
        except requests.Timeout:
            return f"no answer within {self.timeout_s:g}s"
        except requests.ConnectionError as exc:
            cause = _root_cause(exc)
            if isinstance(cause, OSError) and cause.strerror:
                return f"connection failed: {cause.strerror}"
            return f"connection failed: {cause}"
        except Exception as exc:  # a notification must never break the deploy
            return f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Close the session, if it is the notifier's own."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
