from __future__ import annotations

import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.core.record import DeployRecord, parse_timestamp, utc_timestamp
from pytest_bluegreen.reporting.events import EventLog
from pytest_bluegreen.reporting.notify import DeliveryFailure, Notifier, WebhookStyle, summary_line
from pytest_bluegreen.reporting.secrets import SecretPolicy, display_url, redact

SECRET = "hunter2-db-password"
TOKEN = "xoxb-webhook-token-123"
START = datetime(2026, 11, 29, 0, 15, 3, tzinfo=timezone.utc)


def make_record(result: str = "deployed") -> DeployRecord:
    record = DeployRecord(
        id="20261129T001503Z-ab12cd",
        release="r42",
        from_colour="blue",
        to_colour="green",
        started_at=utc_timestamp(START),
    )
    record.set_stage("backup", "passed", 3.0)
    if result == "deployed":
        record.set_stage("post-switch verification", "passed", 2.0)
        record.finish("deployed", now=START + timedelta(seconds=41.2))
    elif result == "rolled_back":
        record.set_stage("post-switch verification", "failed", 2.0)
        record.rollback_s = 0.42
        record.finish("rolled_back", "verification failed", now=START + timedelta(seconds=50))
    return record


# redact


def test_redact_replaces_every_occurrence() -> None:
    assert redact(f"a {SECRET} b {SECRET}", [SECRET]) == "a *** b ***"


def test_redact_ignores_short_and_empty_secrets() -> None:
    assert redact("the pin is 123 and on", ["", "123", "on", "   "]) == "the pin is 123 and on"


def test_redact_leaves_no_fragment_of_overlapping_secrets() -> None:
    assert redact("xxabcdefyy", ["abcd", "cdef"]) == "xx***yy"
    assert redact("password=secretsecret", ["secret", "secretsecret"]) == "password=***"


def test_redact_without_secrets_is_identity() -> None:
    assert redact("nothing to hide", []) == "nothing to hide"


# EventLog


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_lines_are_json_with_the_envelope(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, "20261129T001503Z-ab12cd") as log:
        returned = log.emit("stage.start", stage="backup")
        log.emit("stage.end", level="warning", stage="backup", duration_s=1.25)
    lines = read_lines(path)
    assert lines[0] == returned
    assert [(e["event"], e["level"]) for e in lines] == [
        ("stage.start", "info"),
        ("stage.end", "warning"),
    ]
    for entry in lines:
        assert list(entry)[:4] == ["ts", "level", "event", "deploy_id"]
        assert entry["deploy_id"] == "20261129T001503Z-ab12cd"
        assert entry["ts"].endswith("Z")
        assert len(entry["ts"]) == len("2026-11-29T00:15:03.123Z")
        parse_timestamp(entry["ts"])
    assert lines[1]["duration_s"] == 1.25


def test_secrets_are_redacted_at_every_level(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    record = make_record()
    record.error = f"psql: password {SECRET} rejected"
    record.backup = {"dsn": f"postgres://app:{SECRET}@db/app", "files": [f"/tmp/{SECRET}.sql"]}
    with EventLog(path, "d1", secrets=[SECRET, "no"]) as log:
        written = log.emit(
            f"event-{SECRET}",
            message=f"connecting with {SECRET}",
            nested={"list": [("tuple", f"x{SECRET}x"), {SECRET: {"deeper": [SECRET]}}]},
            record=record.to_dict(),
        )
    text = path.read_text(encoding="utf-8")
    assert SECRET not in text
    assert SECRET not in json.dumps(written)
    entry = read_lines(path)[0]
    assert entry["event"] == "event-***"
    assert entry["message"] == "connecting with ***"
    assert entry["nested"] == {"list": [["tuple", "x***x"], {"***": {"deeper": ["***"]}}]}
    assert entry["record"]["error"] == "psql: password *** rejected"
    assert entry["record"]["backup"]["dsn"] == "postgres://app:***@db/app"
    # "no" is too short to be a secret: ordinary words stay.
    assert entry["record"]["release"] == "r42"


def test_values_that_are_not_json_are_written_with_str(tmp_path: Path) -> None:
    @dataclass
    class Figures:
        switch_ms: float
        tags: list[str] = field(default_factory=list)

    path = tmp_path / "events.jsonl"
    with EventLog(path, "d1", secrets=[SECRET]) as log:
        log.emit(
            "odd.values",
            path=Path("/srv") / SECRET,
            when=START,
            figures=Figures(0.4, ["a"]),
            nan=float("nan"),
            number=3,
            flag=True,
            nothing=None,
        )
    entry = read_lines(path)[0]
    assert entry["path"] == "/srv/***"
    assert entry["when"] == str(START)
    assert entry["figures"] == {"switch_ms": 0.4, "tags": ["a"]}
    assert entry["nan"] == "nan"
    assert (entry["number"], entry["flag"], entry["nothing"]) == (3, True, None)


def test_multiline_text_stays_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, "d1") as log:
        log.emit("compose.output", output="line one\nline two\n")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["output"] == "line one\nline two\n"


def test_reserved_names_and_unknown_levels_are_refused(tmp_path: Path) -> None:
    with EventLog(tmp_path / "events.jsonl", "d1") as log:
        with pytest.raises(ValueError, match="reserved"):
            log.emit("x", ts="yesterday")
        with pytest.raises(ValueError, match="reserved"):
            log.emit("x", deploy_id="other")
        with pytest.raises(ValueError, match="'fatal'"):
            log.emit("x", level="fatal")


def test_file_mode_is_0600_and_parents_are_created(tmp_path: Path) -> None:
    path = tmp_path / "state" / "logs" / "events.jsonl"
    with EventLog(path, "d1") as log:
        log.emit("x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_existing_wider_file_becomes_0600_and_is_appended(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, "d1") as log:
        log.emit("first")
    path.chmod(0o644)
    with EventLog(path, "d2") as log:
        log.emit("second")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [(e["deploy_id"], e["event"]) for e in read_lines(path)] == [
        ("d1", "first"),
        ("d2", "second"),
    ]


def test_each_line_is_visible_before_close(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, "d1")
    try:
        log.emit("one")
        assert [e["event"] for e in read_lines(path)] == ["one"]
        log.emit("two")
        assert [e["event"] for e in read_lines(path)] == ["one", "two"]
    finally:
        log.close()


def test_emit_after_close_is_an_error(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", "d1")
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.emit("late")


# Summaries


def test_summary_lines() -> None:
    deployed = make_record("deployed")
    assert summary_line("success", deployed) == (
        "deploy 20261129T001503Z-ab12cd release r42 blue→green: deployed in 41.2s"
    )
    assert summary_line("start", make_record("running")).endswith("blue→green: started")
    assert summary_line("rollback", make_record("rolled_back")).endswith(
        ": rolled back after post-switch verification failed (rollback 0.4s)"
    )
    aborted = make_record("running")
    aborted.set_stage("deploy", "error", 1.0, "image pull\ntimed out")
    aborted.finish("aborted", "image pull timed out", now=START + timedelta(seconds=12))
    assert summary_line("failure", aborted).endswith(
        ": aborted after 12.0s: deploy failed: image pull timed out"
    )
    fast = make_record("rolled_back")
    fast.rollback_s = 0.004
    assert summary_line("rollback", fast).endswith("(rollback 4ms)")
    first = DeployRecord(id="x", release="r1", from_colour=None, to_colour="blue")
    assert summary_line("start", first) == "deploy x release r1 to blue (first deploy): started"


def test_display_url_hides_userinfo_and_query_values() -> None:
    assert display_url(f"https://bot:{TOKEN}@hooks.example/a/b?token={TOKEN}&v=2#frag") == (
        "https://***@hooks.example/a/b?token=***&v=***"
    )
    assert display_url("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/hook"


# Notifier, against a real HTTP server on the loopback


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Webhook:
    """A webhook receiver that answers each POST with the next status (the last one repeats)."""

    def __init__(self, statuses: tuple[int, ...] = (204,)) -> None:
        self.statuses = list(statuses)
        self.received: list[Received] = []
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                webhook.received.append(Received(self.path, dict(self.headers), body))
                status = (
                    webhook.statuses.pop(0) if len(webhook.statuses) > 1 else webhook.statuses[0]
                )
                self.send_response(status)
                self.send_header("Content-Length", "9")
                self.end_headers()
                self.wfile.write(b"ok or not")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll interval: shutdown() waits for the next poll.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.received]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def failing_webhook() -> Iterator[Webhook]:
    hook = Webhook((500,))
    yield hook
    hook.close()


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def test_json_payload_reaches_the_webhook(webhook: Webhook) -> None:
    record = make_record("deployed")
    with Notifier([f"{webhook.url}/deploys"], style="json", timeout_s=2) as notifier:
        assert notifier.notify("success", record) == []
    [received] = webhook.received
    assert received.path == "/deploys"
    assert received.headers["Content-Type"] == "application/json"
    payload = json.loads(received.body)
    assert payload["kind"] == "success"
    assert payload["deploy"] == record.to_dict()
    assert DeployRecord.from_dict(payload["deploy"]) == record
    assert payload["summary"] == summary_line("success", record)


def test_slack_payload_reaches_the_webhook(webhook: Webhook) -> None:
    record = make_record("rolled_back")
    record.release = "r<42>&co"
    with Notifier([webhook.url], style="slack", timeout_s=2) as notifier:
        assert notifier.notify("rollback", record) == []
    [payload] = webhook.payloads()
    summary = summary_line("rollback", record).replace("&", "&amp;")
    summary = summary.replace("<", "&lt;").replace(">", "&gt;")
    assert payload["text"] == summary
    assert "rolled back after post-switch verification failed (rollback 0.4s)" in payload["text"]
    section = payload["blocks"][0]
    assert section["type"] == "section"
    assert section["text"] == {"type": "mrkdwn", "text": summary}
    fields = [f["text"] for f in payload["blocks"][1]["fields"]]
    assert "*Release*\nr&lt;42&gt;&amp;co" in fields
    assert "*Result*\nrolled_back" in fields


def test_every_url_is_tried(webhook: Webhook, closed_port_url: str) -> None:
    with Notifier([closed_port_url, webhook.url], timeout_s=1, retry_pause_s=0.01) as notifier:
        failures = notifier.notify("start", make_record("running"))
    assert [f.url for f in failures] == [closed_port_url]
    assert len(webhook.received) == 1


def test_a_failing_webhook_gets_one_retry_then_a_delivery_failure(
    failing_webhook: Webhook,
) -> None:
    with Notifier([failing_webhook.url], timeout_s=2, retry_pause_s=0.05) as notifier:
        failures = notifier.notify("failure", make_record("running"))
    assert len(failing_webhook.received) == 2
    assert failing_webhook.payloads()[0] == failing_webhook.payloads()[1]
    [failure] = failures
    assert failure.url == failing_webhook.url
    assert failure.error.startswith("HTTP 500 Internal Server Error")
    assert "2 attempts" in failure.error


def test_a_retry_that_succeeds_is_no_failure() -> None:
    hook = Webhook((503, 200))
    try:
        with Notifier([hook.url], timeout_s=2, retry_pause_s=0.01) as notifier:
            assert notifier.notify("start", make_record("running")) == []
        assert len(hook.received) == 2
    finally:
        hook.close()


def test_a_closed_port_is_a_delivery_failure_not_an_exception(closed_port_url: str) -> None:
    timeout_s = 1.0
    with Notifier([closed_port_url], timeout_s=timeout_s, retry_pause_s=0.1) as notifier:
        started = time.monotonic()
        failures = notifier.notify("start", make_record("running"))
        elapsed = time.monotonic() - started
    assert failures == [
        DeliveryFailure(closed_port_url, "connection failed: Connection refused (after 2 attempts)")
    ]
    assert elapsed < 2 * timeout_s


def test_a_silent_webhook_times_out_within_twice_the_timeout() -> None:
    # Listening but never accepting: the connection opens, the answer never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        timeout_s = 0.3
        with Notifier([url], timeout_s=timeout_s, retry_pause_s=0.05) as notifier:
            started = time.monotonic()
            [failure] = notifier.notify("start", make_record("running"))
            elapsed = time.monotonic() - started
    assert failure.error == "no answer within 0.3s (after 2 attempts)"
    assert elapsed < 2 * timeout_s + 0.05 + 0.5


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/hook", "file:///etc/passwd", "127.0.0.1:8080/hook", "mailto:ops@example"],
)
def test_a_non_http_url_is_a_delivery_failure_at_once(url: str) -> None:
    with Notifier([url], timeout_s=5, retry_pause_s=5) as notifier:
        started = time.monotonic()
        [failure] = notifier.notify("start", make_record("running"))
        assert time.monotonic() - started < 1
    assert "unsupported URL scheme" in failure.error


def test_an_unparseable_url_is_a_delivery_failure() -> None:
    with Notifier(["http://[::1/hook"], retry_pause_s=0) as notifier:
        [failure] = notifier.notify("start", make_record("running"))
    assert failure.error.startswith("invalid URL")


def test_delivery_failures_do_not_show_url_credentials(closed_port_url: str) -> None:
    url = closed_port_url.replace("http://", f"http://bot:{TOKEN}@") + f"?token={TOKEN}"
    with Notifier([url], timeout_s=1, retry_pause_s=0.01) as notifier:
        [failure] = notifier.notify("start", make_record("running"))
    assert TOKEN not in failure.url
    assert TOKEN not in failure.error
    assert failure.url.startswith("http://***@127.0.0.1:")
    assert failure.url.endswith("/hook?token=***")


@pytest.mark.parametrize("style", ["json", "slack"])
def test_secrets_never_reach_the_webhook(webhook: Webhook, style: WebhookStyle) -> None:
    record = make_record("rolled_back")
    record.release = f"r42-{SECRET}"
    record.error = f"login as admin:{SECRET} failed"
    record.stages[-1].message = f"got {SECRET}"
    record.backup = {"dsn": {"password": SECRET}, "list": [SECRET]}
    with Notifier([webhook.url], style=style, secrets=[SECRET], timeout_s=2) as notifier:
        assert notifier.notify("rollback", record) == []
    [received] = webhook.received
    assert SECRET.encode() not in received.body
    assert b"***" in received.body


def test_no_urls_sends_nothing() -> None:
    with Notifier([]) as notifier:
        assert notifier.notify("start", make_record("running")) == []


def test_bad_settings_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="style"):
        Notifier(["http://127.0.0.1/"], style="teams")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_s"):
        Notifier(["http://127.0.0.1/"], timeout_s=0)
    with pytest.raises(TypeError, match="one string"):
        Notifier("http://127.0.0.1/")


def test_own_session_ignores_proxy_environment(
    webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy that does not exist: a session that read the environment would fail to deliver.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with Notifier([webhook.url], timeout_s=2, retry_pause_s=0.01) as notifier:
        assert notifier.notify("start", make_record("running")) == []
    assert len(webhook.received) == 1


def test_a_notifier_takes_the_secret_policy_and_a_new_one_later(webhook: Webhook) -> None:
    record = make_record("deployed")
    record.release = f"r42-{SECRET}-{TOKEN}"
    with Notifier([webhook.url], secrets=SecretPolicy((SECRET,)), timeout_s=2) as notifier:
        assert notifier.secrets == (SECRET,)
        notifier.notify("success", record)
        notifier.secrets = SecretPolicy((SECRET, TOKEN))  # the env file was read again
        notifier.notify("success", record)
    first, second = (payload["deploy"]["release"] for payload in webhook.payloads())
    assert first == f"r42-***-{TOKEN}"
    assert second == "r42-***-***"
