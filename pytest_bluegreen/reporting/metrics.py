"""Deploy metrics in the Prometheus text format: a textfile for node_exporter, a Pushgateway push.

Written after every deploy from its record and the history of records: what a dashboard plots
(durations, each stage's seconds, requests and failures across the switch) and what an alert
fires on (``bluegreen_deploy_success == 0``, a rise of ``bluegreen_rollbacks_total``). Every
label value (release, stage...) goes through the secret policy. A metric that cannot be published
is reported to the caller, never raised: the deploy matters more.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.files import write_atomically
from pytest_bluegreen.core.record import RESULTS, DeployRecord, RecordStore, parse_timestamp
from pytest_bluegreen.reporting.secrets import SecretPolicy

PUSH_JOB: Final = "bluegreen"


class DeployCollector(Collector):
    """The metrics of the latest deploy, and counts over every recorded one.

    Every label value is masked by ``policy`` (default: no secrets).
    """

    def __init__(
        self,
        record: DeployRecord,
        history: Sequence[DeployRecord],
        project: str,
        policy: SecretPolicy | None = None,
    ):
        self.record = record
        self.history = history
        self.policy = SecretPolicy() if policy is None else policy
        self.project = self.policy.redact(project)

    def collect(self) -> Iterable[Metric]:
        record, project, shown = self.record, self.project, self.policy.redact
        labels = ["project"]
        info = GaugeMetricFamily(
            "bluegreen_deploy_info",
            "The latest deploy: release, colours and result in labels, value 1.",
            labels=[*labels, "deploy_id", "release", "from_colour", "to_colour", "result"],
        )
        info.add_metric(
            [
                project,
                shown(record.id),
                shown(record.release),
                shown(record.from_colour or "none"),
                shown(record.to_colour or "none"),
                shown(record.result),
            ],
            1,
        )
        yield info
        yield _gauge(
            "bluegreen_deploy_success",
            "1 when the latest deploy was deployed, 0 when it aborted, rolled back or was cut.",
            project,
            1.0 if record.result == "deployed" else 0.0,
        )
        if record.duration_s is not None:
            yield _gauge(
                "bluegreen_deploy_duration_seconds",
                "Wall time of the latest deploy.",
                project,
                record.duration_s,
            )
        if record.finished_at is not None:
            yield _gauge(
                "bluegreen_deploy_timestamp_seconds",
                "When the latest deploy finished (Unix time).",
                project,
                parse_timestamp(record.finished_at).timestamp(),
            )
        stages = GaugeMetricFamily(
            "bluegreen_stage_duration_seconds",
            "Seconds each stage of the latest deploy took.",
            labels=[*labels, "stage", "outcome"],
        )
        for stage in record.stages:
            stages.add_metric([project, shown(stage.name), shown(stage.outcome)], stage.duration_s)
        yield stages
        load = record.load or {}
        total = load.get("total") or {}
        if total:
            yield _gauge(
                "bluegreen_switch_requests",
                "Requests sent through the public URL across the latest switch.",
                project,
                float(total.get("requests", 0)),
            )
            yield _gauge(
                "bluegreen_switch_failed_requests",
                "Requests that failed across the latest switch (the budget is 0).",
                project,
                float(total.get("failures", 0)),
            )
        overhead_ms = load.get("p99_overhead_ms")
        if isinstance(overhead_ms, (int, float)) and math.isfinite(overhead_ms):
            yield _gauge(
                "bluegreen_switch_p99_overhead_seconds",
                "p99 latency in the second after the switch minus p99 before it.",
                project,
                overhead_ms / 1000,
            )
        if record.rollback_s is not None:
            yield _gauge(
                "bluegreen_rollback_seconds",
                "From the failed verdict to every new request on the old colour (latest deploy).",
                project,
                record.rollback_s,
            )
        if record.placement:
            tasks = GaugeMetricFamily(
                "bluegreen_service_tasks",
                "Running containers or tasks of each service per host (a swarm's node).",
                labels=[*labels, "service", "node"],
            )
            for service, hosts in sorted(record.placement.items()):
                for host, count in sorted(Counter(hosts).items()):
                    tasks.add_metric([project, shown(service), shown(host)], count)
            yield tasks
        counts = Counter(r.result for r in self.history)
        deploys = CounterMetricFamily(
            "bluegreen_deploys", "Deploys on record, by result.", labels=[*labels, "result"]
        )
        for result in RESULTS:
            if result != "running":
                deploys.add_metric([project, result], counts[result])
        yield deploys
        rollbacks = CounterMetricFamily(
            "bluegreen_rollbacks", "Deploys on record that were rolled back.", labels=labels
        )
        rollbacks.add_metric([project], counts["rolled_back"])
        yield rollbacks


def _gauge(name: str, documentation: str, project: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=["project"])
    gauge.add_metric([project], value)
    return gauge


def render(
    record: DeployRecord,
    history: Sequence[DeployRecord],
    project: str,
    policy: SecretPolicy | None = None,
) -> str:
    """The Prometheus text exposition of ``record`` (latest) and ``history`` (every deploy).

    ``policy`` masks every label value (default: no secrets).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeployCollector(record, history, project, policy))
    return generate_latest(registry).decode("utf-8")


def write_textfile(path: Path, text: str) -> None:
    """Atomically, as node_exporter's textfile collector asks (it must never read half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text, mode=0o644)


def push(url: str, text: str, project: str, timeout_s: float = 5.0) -> str | None:
    """PUT ``text`` to a Pushgateway (grouped by job and project); None, or what went wrong."""
    target = f"{url.rstrip('/')}/metrics/job/{PUSH_JOB}/project/{project}"
    session = requests.Session()
    session.trust_env = False  # a proxy meant for the internet must not reroute a local gateway
    try:
        with session:
            response = session.put(
                target,
                data=text.encode("utf-8"),
                headers={"Content-Type": "text/plain; version=0.0.4"},
                timeout=timeout_s,
            )
    except requests.RequestException as exc:
        return f"{type(exc).__name__}: {exc}"
    if not 200 <= response.status_code < 300:
        return f"HTTP {response.status_code}: {' '.join(response.text.split())[:200]}"
    return None


def publish(
    config: StackConfig, record: DeployRecord, policy: SecretPolicy | None = None
) -> list[str]:
    """Write the textfile and push (when configured); the problems, [] when all went out.

    ``policy``: the deploy's secret policy (default: the stack's, from ``config``), applied to
    every label value, the push's grouping key and every problem reported.
    """
    policy = SecretPolicy.for_config(config) if policy is None else policy
    history = RecordStore(config.state_dir).history(limit=100_000)
    if all(r.id != record.id for r in history):
        history.append(record)
    project = policy.redact(config.project_name)
    text = render(record, history, config.project_name, policy)
    problems = []
    try:
        write_textfile(config.metrics_path, text)
    except OSError as exc:
        problems.append(f"metrics file {config.metrics_path}: {exc.strerror or exc}")
    if config.reporting.pushgateway_url:
        problem = push(config.reporting.pushgateway_url, text, project)
        if problem:
            problems.append(
                f"push to {policy.display_url(config.reporting.pushgateway_url)}: {problem}"
            )
    return [policy.redact(problem) for problem in problems]
