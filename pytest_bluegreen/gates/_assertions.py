"""What the packaged gates assert, in one place, so that each gate file is a few lines.

Every failure is one message that names what was checked, what was found and the setting that
decides it; nothing here depends on assertion rewriting.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Final

import pytest

from pytest_bluegreen.adapters.engines import runs_on_this_host
from pytest_bluegreen.checks.latency import measure
from pytest_bluegreen.checks.probe import Target, check_colour_serves
from pytest_bluegreen.core.config import HARDENING_DEFAULTS, StackConfig
from pytest_bluegreen.gates import BluegreenWarning
from pytest_bluegreen.session import TRACKER_KEY
from pytest_bluegreen.stage_tracker import not_applicable

TIMEOUT_S: Final = 10.0
MEDIAN_SAMPLES: Final = 5


def fail_on(problems: Sequence[str], headline: str) -> None:
    """Fail with every problem on one line after ``headline``; pass when there is none."""
    if problems:
        pytest.fail(f"{headline}: {'; '.join(problems)}", pytrace=False)


def warn(config: pytest.Config, message: str, stacklevel: int = 2) -> None:
    """Report ``message`` and pass: a line of the deploy's progress and a pytest warning.

    The warning stays a warning under ``filterwarnings = error``: whether a check fails is the
    settings' decision, not the warning filters'.
    """
    tracker = config.stash.get(TRACKER_KEY, None)
    if tracker is not None:
        tracker.progress(f"warning: {message}")
    with warnings.catch_warnings():
        warnings.simplefilter("always", BluegreenWarning)
        warnings.warn(message, BluegreenWarning, stacklevel=stacklevel)


def assert_paths_served(target: Target, expected_status: Mapping[str, int]) -> None:
    """Each critical path answers its expected status from the target's colour and release."""
    paths = target.critical_paths
    if not paths:
        not_applicable("no critical_paths in the settings")
    problems = check_colour_serves(
        target.url,
        paths,
        target.colour,
        target.ca_file,
        TIMEOUT_S,
        release=target.release,
        expected_status=expected_status,
    )
    who = ", ".join(
        f"{what} {value}"
        for what, value in (("colour", target.colour), ("release", target.release))
        if value is not None
    )
    fail_on(
        problems,
        f"{target.url}: {len(problems)} of {len(paths)} critical paths do not answer as expected"
        f"{f' from {who}' if who else ''} (settings critical_paths, expected_status)",
    )


def assert_median_within(
    target: Target, budget_ms: float, expected_status: Mapping[str, int]
) -> None:
    """The median of a few requests to each critical path is within ``budget_ms``.

    One request's time is one scheduler hiccup away from noise, and users' traffic goes on
    meanwhile; the latency gate judged p99 before the switch. A path expected to answer an
    error (``expected_status`` 4xx or 5xx) is not timed.
    """
    paths = [path for path in target.critical_paths if expected_status.get(path, 200) < 400]
    if not paths:
        not_applicable("no critical path answers 2xx or 3xx to time")
    measured = measure({"public": target.url}, paths, MEDIAN_SAMPLES, ca_file=target.ca_file)
    latency = measured.targets["public"]
    problems = [f"{error.path}: {error.error}" for error in latency.errors]
    for path, stats in latency.per_path.items():
        if stats.requests and stats.p50_ms > budget_ms:
            each = ", ".join(f"{ms:.0f}" for ms in latency.samples_ms[path])
            problems.append(f"{path}: median {stats.p50_ms:.0f} ms (each: {each})")
    fail_on(
        problems,
        f"{target.url}: critical paths slow or failing (median of {MEDIAN_SAMPLES} requests "
        f"each, budget {budget_ms:.0f} ms: setting latency_p99_budget_ms)",
    )


def hardening_mode(settings: StackConfig, check: str) -> str:
    """A hardening check's mode, "gate" or "warn"; "off" is not applicable (setting hardening)."""
    mode = settings.gates.hardening.get(check, HARDENING_DEFAULTS[check])
    if mode == "off":
        not_applicable(f"hardening.{check} is off in the settings")
    return mode


def judge_hardening(
    config: pytest.Config, check: str, mode: str, problems: Sequence[str], advice: str
) -> None:
    """Fail on ``problems`` when the check is a gate; when it is a warning, report and pass."""
    if not problems:
        return
    message = f"hardening.{check}: {'; '.join([*problems, *([advice] if advice else [])])}"
    if mode == "warn":
        warn(config, f"{message} (a warning: hardening.{check} = 'warn')", stacklevel=3)
        return
    pytest.fail(message, pytrace=False)


def require_containers_here(settings: StackConfig) -> None:
    """Not applicable where the engine runs the containers out of this run's reach.

    A swarm's tasks run on other nodes than the manager's engine, which is all a deploy reaches.
    """
    if not runs_on_this_host(settings):
        not_applicable(
            f"on the {settings.engine.name} engine: the containers are not on the engine the "
            "deploy talks to"
        )
