"""One secret policy: every secret-looking variable of the stack's environment, in every output."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pytest_bluegreen.core.config import StackConfig, load_config
from pytest_bluegreen.core.record import DeployRecord, RecordStore
from pytest_bluegreen.reporting import metrics, report
from pytest_bluegreen.reporting.events import EventLog
from pytest_bluegreen.reporting.metrics import render
from pytest_bluegreen.reporting.notify import Notifier, WebhookStyle
from pytest_bluegreen.reporting.secrets import SecretPolicy, secret_values
from scenarios.harness import ReportReader
from tests.unit.test_events import Webhook


def test_secret_looking_names_are_secrets_whatever_they_are_called() -> None:
    env = {"REDIS_PASSWORD": "hunter2-redis", "API_TOKEN": "tok-123456", "HOST": "db.internal"}
    assert set(secret_values(env, ["known-one"])) == {"hunter2-redis", "tok-123456", "known-one"}


def test_every_secret_of_the_stack_is_masked_on_screen_and_in_the_log(tmp_path: Path) -> None:
    """As a deploy does: the policy of the stack, read again once the env file is written."""
    env_file = tmp_path / ".env"
    env_file.write_text("POSTGRES_PASSWORD=pg-secret-value\n")
    config = StackConfig(
        project_dir=tmp_path,
        state_dir=tmp_path / "state",
        env_file=env_file,
        env={"REDIS_PASSWORD": "hunter2-redis"},  # not one of the reference stack's own
    )
    policy = SecretPolicy.for_config(config)
    log = EventLog(config.log_file, "d1", secrets=policy)
    env_file.write_text("POSTGRES_PASSWORD=pg-secret-value\nSTATS_PASSWORD=written-later\n")
    policy = policy.refreshed(config)  # as prerequisites do once the env file is made
    log.secrets = policy

    message = "redis hunter2-redis, pg pg-secret-value, stats written-later"
    shown = policy.redact(message)
    log.emit("test", message=message)
    log.close()

    assert shown == "redis ***, pg ***, stats ***"
    (line,) = config.log_file.read_text().splitlines()
    assert json.loads(line)["message"] == "redis ***, pg ***, stats ***"
    assert log.secrets == policy.values


# --- THE policy: the stack's secret-looking variables and the names the settings add --------

STRIPE = "sk_live_stripe-0123456789"  # STRIPE_API_KEY: secret-looking, not a generated one
CREDS = "creds-of-mine-abcdef"  # MY_CREDS: secret only because the settings say so
TEXT = f"card {STRIPE} refused, creds {CREDS}"
MASKED = "card *** refused, creds ***"


@pytest.fixture
def stack(tmp_path: Path) -> StackConfig:
    (tmp_path / "docker-compose.blue-green.yml").write_text("services: {}\n")
    (tmp_path / ".env").write_text(
        f"STRIPE_API_KEY={STRIPE}\nMY_CREDS={CREDS}\nAPP_HOST=db.internal\n"
    )
    (tmp_path / "bluegreen.toml").write_text('secret_names = ["my_creds"]\n')
    return load_config(tmp_path, environ={})


@pytest.fixture
def policy(stack: StackConfig) -> SecretPolicy:
    return SecretPolicy.for_config(stack)


def leaky_record() -> DeployRecord:
    """A record with both secrets wherever text goes: release, error, stages, figures, logs."""
    record = DeployRecord(
        id="20261129T001503Z-00ab12",
        release=f"r42-{CREDS}",
        from_colour="blue",
        to_colour="green",
        started_at="2026-11-29T00:15:03.000Z",
    )
    record.set_stage("backup", "passed", 1.5)
    record.set_stage("switch", "failed", 7.2, TEXT)
    record.backup = {"file": "/b/x.sql.gz", "dsn": {"password": STRIPE}, "row_counts": {"a": 1}}
    record.logs = {"backend-green": f"boom: {TEXT}"}
    record.finish("rolled_back", error=TEXT, now=datetime(2026, 11, 29, 0, 16, tzinfo=timezone.utc))
    return record


def assert_masked(text: str) -> None:
    assert STRIPE not in text
    assert CREDS not in text
    assert "***" in text


def test_the_policy_takes_secret_looking_names_and_the_settings_names(
    stack: StackConfig, policy: SecretPolicy
) -> None:
    assert set(policy.values) == {STRIPE, CREDS}
    assert policy.names == ("my_creds",)
    assert policy.is_secret_name("STRIPE_API_KEY")
    assert policy.is_secret_name("MY_CREDS")  # names match ignoring case
    assert not policy.is_secret_name("APP_HOST")
    assert policy.redact(TEXT) == MASKED
    assert policy.mask_environment(stack.environment)["APP_HOST"] == "db.internal"
    assert list(policy) == list(policy.values)  # goes wherever bare secrets go
    # Without the setting, MY_CREDS is an ordinary variable.
    unnamed = SecretPolicy.for_config(
        dataclasses.replace(stack, reporting=dataclasses.replace(stack.reporting, secret_names=()))
    )
    assert unnamed.values == (STRIPE,)


def test_the_policy_is_read_again_once_the_env_file_is_written(stack: StackConfig) -> None:
    policy = SecretPolicy.for_config(stack, known=["handed-over-value"])
    stack.env_file.write_text(f"MY_CREDS={CREDS}\nLATER_TOKEN=written-later-xyz\n")
    refreshed = policy.refreshed(stack)
    assert set(refreshed.values) == {STRIPE, CREDS, "handed-over-value", "written-later-xyz"}


def test_the_console_line(policy: SecretPolicy) -> None:
    assert policy.redact(f"deploying: {TEXT}") == f"deploying: {MASKED}"


def test_the_event_log_line(tmp_path: Path, policy: SecretPolicy) -> None:
    path = tmp_path / "deploy.log.jsonl"
    with EventLog(path, "d1", secrets=policy) as log:
        log.emit("stage", message=TEXT, figures={"dsn": {CREDS: STRIPE}})
    text = path.read_text()
    assert_masked(text)
    line = json.loads(text)
    assert line["message"] == MASKED
    assert line["figures"] == {"dsn": {"***": "***"}}


def test_an_event_log_given_the_policy_later(tmp_path: Path, policy: SecretPolicy) -> None:
    path = tmp_path / "deploy.log.jsonl"
    with EventLog(path, "d1") as log:
        log.secrets = policy  # as a deployment does once the env file is written
        log.emit("stage", message=TEXT)
    assert json.loads(path.read_text())["message"] == MASKED


@pytest.mark.parametrize("style", ["json", "slack"])
def test_the_webhook_body(style: WebhookStyle, policy: SecretPolicy) -> None:
    hook = Webhook()
    try:
        with Notifier([hook.url], style=style, secrets=policy, timeout_s=2) as notifier:
            assert notifier.notify("rollback", leaky_record()) == []
    finally:
        hook.close()
    [received] = hook.received
    assert_masked(received.body.decode())
    payload = json.loads(received.body)
    if style == "json":
        assert payload["deploy"]["error"] == MASKED
        assert payload["deploy"]["release"] == "r42-***"
    else:
        assert "rolled back after switch failed: card *** refused" in payload["text"]


def test_the_record_as_saved(tmp_path: Path, policy: SecretPolicy) -> None:
    record = leaky_record()
    store = RecordStore(tmp_path / "state", mask=policy.mask_json)
    path = store.save(record)
    for saved in (path, store.last_path):
        assert_masked(saved.read_text())
    loaded = store.load(record.id)
    assert loaded.error == MASKED
    assert loaded.release == "r42-***"
    assert loaded.stages[1].message == MASKED
    assert loaded.backup == {
        "file": "/b/x.sql.gz",
        "dsn": {"password": "***"},
        "row_counts": {"a": 1},
    }
    assert loaded.logs == {"backend-green": f"boom: {MASKED}"}
    assert (loaded.id, loaded.result, loaded.duration_s) == (record.id, "rolled_back", 57.0)
    assert record.error == TEXT  # the record in memory is left as it is


def test_the_record_masked_at_one_save(tmp_path: Path, policy: SecretPolicy) -> None:
    store = RecordStore(tmp_path / "state")
    assert_masked(store.save(leaky_record(), mask=policy.mask_json).read_text())


def test_the_html_report_sections(stack: StackConfig) -> None:
    # No secrets handed over: the sections take the stack's own policy from its settings.
    (html,) = report.sections(leaky_record(), stack)
    assert_masked(html)
    fields = ReportReader(html).fields
    assert fields["STRIPE_API_KEY"] == "***"
    assert fields["MY_CREDS"] == "***"
    assert fields["APP_HOST"] == "db.internal"
    assert fields["release"] == "r42-***"
    assert fields["error"] == MASKED
    assert f"boom: {MASKED}" in html


def test_the_junit_and_html_files(tmp_path: Path, policy: SecretPolicy) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(f'<testcase name="t"><system-out>{TEXT}</system-out></testcase>')
    assert report.redact_file(path, policy)
    assert path.read_text() == f'<testcase name="t"><system-out>{MASKED}</system-out></testcase>'


def test_the_metrics_text(policy: SecretPolicy) -> None:
    record = leaky_record()
    record.set_stage(f"gate {STRIPE}", "passed", 1.0)
    text = render(record, [record], "aptos", policy)
    assert_masked(text)
    labels = [
        sample.labels
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]
    assert {"release": "r42-***"}.items() <= next(lb for lb in labels if "release" in lb).items()
    assert any(lb.get("stage") == "gate ***" for lb in labels)


def test_the_metrics_file_takes_the_stacks_policy(stack: StackConfig) -> None:
    record = leaky_record()
    assert metrics.publish(stack, record) == []
    text = stack.metrics_path.read_text()
    assert_masked(text)
    assert 'release="r42-***"' in text
