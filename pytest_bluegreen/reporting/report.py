"""The deploy's part of the HTML report: what a release manager reads before anything else.

Sections, each from the deploy record (never from memory of the run, so a report says what the
record says): summary, stage timeline, load across the switch (chart and figures), switch, backup,
migration, the logs of a colour that failed, and the environment with every secret masked.
pytest-html puts them above its results table; :func:`redact_file` then masks the secrets in the
whole written report, whatever a test printed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Any, Final

from pytest_bluegreen.core.config import SECTIONS, StackConfig, read_env_file
from pytest_bluegreen.core.files import write_atomically
from pytest_bluegreen.core.record import DeployRecord
from pytest_bluegreen.reporting.chart import load_chart, stage_timeline
from pytest_bluegreen.reporting.secrets import SecretPolicy

STYLE: Final = """
<style>
.bluegreen h2 { margin-top: 1.2em; }
.bluegreen table { border-collapse: collapse; margin: 0.4em 0 0.8em; }
.bluegreen td, .bluegreen th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
.bluegreen .result-deployed { color: #2e7d32; font-weight: bold; }
.bluegreen .result-aborted, .bluegreen .result-rolled_back, .bluegreen .result-interrupted
  { color: #c62828; font-weight: bold; }
.bluegreen pre { background: #f6f6f6; padding: 6px; max-height: 24em; overflow: auto; }
</style>
"""


def _table(rows: Iterable[tuple[str, Any]], section: str) -> str:
    cells = "".join(
        f'<tr><th>{escape(str(name))}</th><td data-field="{escape(str(name))}">'
        f"{escape(str(value))}</td></tr>"
        for name, value in rows
    )
    return f'<table class="bluegreen-{section}">{cells}</table>'


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def summary_section(record: DeployRecord) -> str:
    route = f"{record.from_colour or 'none (first deploy)'} -> {record.to_colour or '?'}"
    rows: list[tuple[str, Any]] = [
        ("release", record.release),
        ("colours", route),
        ("result", record.result),
        ("total time", _seconds(record.duration_s)),
        ("rollback time", _seconds(record.rollback_s)),
        ("rollback verified after", _seconds(record.rollback_verified_s)),
        ("deploy id", record.id),
        ("started", record.started_at),
        ("finished", record.finished_at or "-"),
        ("host", record.hostname),
    ]
    if record.error:
        rows.append(("error", record.error))
    return (
        f'<h2 id="bluegreen-summary">Deploy <span class="result-{escape(record.result)}">'
        f"{escape(record.result)}</span>: {escape(record.release)}</h2>" + _table(rows, "summary")
    )


def timeline_section(record: DeployRecord) -> str:
    stages = [(s.name, s.outcome, s.duration_s) for s in record.stages]
    rows = "".join(
        f"<tr><td>{escape(s.name)}</td><td>{escape(s.outcome)}</td>"
        f"<td>{s.duration_s:.3f}</td><td>{escape(s.message)}</td></tr>"
        for s in record.stages
    )
    return (
        '<h2 id="bluegreen-timeline">Stages</h2>'
        + stage_timeline(stages)
        + '<table class="bluegreen-stages"><tr><th>stage</th><th>outcome</th><th>seconds</th>'
        + f"<th>note</th></tr>{rows}</table>"
    )


def load_section(record: DeployRecord) -> str:
    load = record.load
    if not load:
        return (
            '<h2 id="bluegreen-load">Load across the switch</h2>'
            "<p>No load ran across the switch (a first deploy, load_users = 0, or the deploy "
            "stopped before the switch).</p>"
        )
    rows: list[tuple[str, Any]] = []
    for window in ("before", "first_second", "after", "total"):
        figures = load.get(window) or {}
        rows.append(
            (
                window.replace("_", " "),
                f"{figures.get('requests', 0)} requests, {figures.get('failures', 0)} failed, "
                f"p50 {figures.get('p50_ms', 0):.1f} ms, p99 {figures.get('p99_ms', 0):.1f} ms",
            )
        )
    rows += [
        ("p99 overhead (first second - before)", f"{load.get('p99_overhead_ms', 0):.1f} ms"),
        ("answered by the old colour after the switch", load.get("old_colour_after_switch", 0)),
        ("switch at", f"{load.get('switch_at_s', 0):.3f} s"),
    ]
    if load.get("rollback_at_s") is not None:
        rows.append(("rollback at", f"{load['rollback_at_s']:.3f} s"))
        rows.append(("back on the old colour after", f"{load.get('back_on_old_ms', 0):.1f} ms"))
    chart = load_chart(
        load.get("series") or [], load.get("switch_at_s", 0.0), load.get("rollback_at_s")
    )
    return '<h2 id="bluegreen-load">Load across the switch</h2>' + chart + _table(rows, "load")


def switch_section(record: DeployRecord) -> str:
    if not record.switch:
        return ""
    rows = [(k, f"{v:.3f} ms" if k.endswith("_ms") else v) for k, v in record.switch.items()]
    return '<h2 id="bluegreen-switch">Switch (HAProxy runtime API)</h2>' + _table(rows, "switch")


def placement_section(record: DeployRecord) -> str:
    """Which host or node ran each service at the end (a swarm's nodes, or this host)."""
    if not record.placement:
        return ""
    rows = [(service, ", ".join(hosts)) for service, hosts in sorted(record.placement.items())]
    return '<h2 id="bluegreen-placement">Where each service ran</h2>' + _table(rows, "placement")


def backup_section(record: DeployRecord) -> str:
    backup = record.backup
    if not backup:
        return '<h2 id="bluegreen-backup">Backup</h2><p>No backup was taken.</p>'
    counts = backup.get("row_counts") or {}
    rows: list[tuple[str, Any]] = [
        ("file", backup.get("file", "?")),
        ("sha256", backup.get("sha256", "?")),
        ("size", f"{backup.get('size_bytes', 0)} bytes"),
        ("rows verified", ", ".join(f"{t}: {n}" for t, n in sorted(counts.items())) or "-"),
        ("dump / verify", f"{backup.get('dump_s', 0):.3f} s / {backup.get('verify_s', 0):.3f} s"),
    ]
    return '<h2 id="bluegreen-backup">Backup</h2>' + _table(rows, "backup")


def migration_section(record: DeployRecord) -> str:
    if not record.migration:
        return ""
    rows = [
        (k, ", ".join(map(str, v)) if isinstance(v, list) else v)
        for k, v in record.migration.items()
    ]
    return '<h2 id="bluegreen-migration">Migration rehearsal</h2>' + _table(rows, "migration")


def logs_section(record: DeployRecord) -> str:
    if not record.logs:
        return ""
    blocks = "".join(
        f'<h3>{escape(service)}</h3><pre data-service="{escape(service)}">{escape(str(text))}</pre>'
        for service, text in record.logs.items()
    )
    return (
        f'<h2 id="bluegreen-logs">Logs of the failed colour ({escape(str(record.to_colour))})</h2>'
        + blocks
    )


def _shown_setting(name: str, value: Any, policy: SecretPolicy) -> Any:
    """Webhook and gateway URLs carry their tokens in the path or query: scheme and host only."""
    if name == "reporting.webhooks":
        return tuple(policy.host_only_url(url) for url in value)
    if name == "reporting.pushgateway_url" and value:
        return policy.host_only_url(value)
    return value


def _settings_of(config: StackConfig) -> list[tuple[str, Any]]:
    """Each setting by its dotted name; not ``env``: the whole process environment, maybe tokens."""
    rows = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in SECTIONS:
            rows += [
                (f"{f.name}.{g.name}", getattr(value, g.name)) for g in dataclasses.fields(value)
            ]
        elif f.name != "env":
            rows.append((f.name, value))
    return rows


def environment_section(config: StackConfig, policy: SecretPolicy | None = None) -> str:
    """The settings and the stack's env file, secret variables ``***`` (default: its policy)."""
    policy = SecretPolicy.for_config(config) if policy is None else policy
    settings = [(name, _shown_setting(name, value, policy)) for name, value in _settings_of(config)]
    stack_env = policy.mask_environment(config.environment)
    env_rows = [(name, stack_env.get(name, "")) for name in sorted(read_env_file(config.env_file))]
    return (
        '<h2 id="bluegreen-environment">Environment</h2><h3>Settings</h3>'
        + _table(settings, "settings")
        + f"<h3>Stack environment ({escape(str(config.env_file))})</h3>"
        + _table(env_rows, "environment")
    )


def sections(record: DeployRecord, config: StackConfig, secrets: Iterable[str] = ()) -> list[str]:
    """The deploy's sections, as HTML, every secret masked.

    ``secrets``: the deploy's :class:`SecretPolicy` (or bare values), joined with the stack's own.
    """
    policy = SecretPolicy.for_config(config, known=secrets)
    parts = [
        STYLE,
        summary_section(record),
        timeline_section(record),
        load_section(record),
        switch_section(record),
        placement_section(record),
        backup_section(record),
        migration_section(record),
        logs_section(record),
        environment_section(config, policy),
    ]
    html = '<div class="bluegreen">' + "".join(p for p in parts if p) + "</div>"
    return [policy.redact(html)]


def redact_file(path: Path, secrets: Iterable[str]) -> bool:
    """Mask ``secrets`` in a written report (HTML or JUnit); True when something was masked.

    ``secrets``: the deploy's :class:`SecretPolicy`, or bare values.
    """
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    masked = SecretPolicy.of(secrets).redact(text)
    if masked == text:
        return False
    write_atomically(path, masked.encode("utf-8", errors="surrogateescape"), mode=0o644)
    return True


def report_paths(config: StackConfig, deploy_id: str) -> Mapping[str, Path]:
    """Where a deploy session's reports go when the command line does not say."""
    folder = config.state_dir / "reports"
    return {"html": folder / f"{deploy_id}.html", "junit": folder / f"{deploy_id}.xml"}
