"""Ordered deploy stages on top of pytest: sort, stop after a failure, record, conclude.

Items belong to a stage through the ``bluegreen_stage`` marker, or by where they live: the
post-deploy suite (a folder of the project, or of the package for ``bluegreen:postdeploy``) is
the ``verify`` stage, every other collected test is a ``gates`` test. The
first failure stops the deploy: later items are skipped with the reason, and the session
fixture's finalizer concludes with an abort or a rollback
(see :mod:`pytest_bluegreen.core.deployment`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import pytest

if TYPE_CHECKING:
    from pytest_bluegreen.core.deployment import Deployment

# The stages of a deploy, in order (stage_items.py has one item for each of the built-in ones).
STAGES: Final = (
    "prerequisites",
    "colours",
    "backup",
    "build",
    "migration",
    "bring_up",
    "gates",
    "switch",
    "verify",
    "bake",
    "retire",
)

STAGE_KEY = pytest.StashKey[str]()
NOT_APPLICABLE: Final = "not applicable: "


def not_applicable(reason: str) -> NoReturn:
    """Skip a check that has nothing to check here (a live-colour check on a first deploy).

    Any other skip of a gate stops the deploy (gates fail closed); this one is counted as
    ``not_applicable`` and lets it go on.
    """
    pytest.skip(NOT_APPLICABLE + reason)


def terminal_writer(config: pytest.Config) -> Callable[[str], None]:
    """Lines on the terminal, each on its own line, even while pytest captures test output."""

    def write(message: str) -> None:
        capture: Any = config.pluginmanager.get_plugin("capturemanager")
        try:
            terminal = config.get_terminal_writer()
        except (AttributeError, AssertionError):  # no terminal reporter (-p no:terminal)
            print(message, file=sys.stderr)
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            if terminal.width_of_current_line:
                terminal.line()
            terminal.line(message)

    return write


class StageTracker:
    """The state of one ``--bg-deploy`` session, registered as a plugin."""

    def __init__(
        self,
        postdeploy_dir: Path,
        make_deployment: Callable[[], Deployment],
        config: pytest.Config | None = None,
    ) -> None:
        self.postdeploy_dir = postdeploy_dir
        self.make_deployment = make_deployment
        self.config = config  # its hook gets pytest_bluegreen_stage_ended, when given
        self.deployment: Deployment | None = None
        self.stage_of: dict[str, str] = {}
        self.outcomes: dict[str, Counter[str]] = {stage: Counter() for stage in STAGES}
        self.durations: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.failed_stage: str | None = None
        self.error: str | None = None
        self.verdict_at: float | None = None
        self.current_stage: str | None = None
        self.stage_started = time.monotonic()
        self.ended: set[str] = set()
        self.write: Callable[[str], None] = print

    # -- collection ----------------------------------------------------------------------------

    def stage_for(self, item: pytest.Item) -> str:
        marker = item.get_closest_marker("bluegreen_stage")
        if marker is not None:
            stage = marker.args[0] if marker.args else marker.kwargs.get("name")
            if stage not in STAGES:
                raise pytest.UsageError(
                    f"{item.nodeid}: bluegreen_stage({stage!r}) is not a stage; "
                    f"use one of {', '.join(STAGES)}"
                )
            return str(stage)
        if _within(item.path, self.postdeploy_dir):
            return "verify"
        return "gates"

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            stage = self.stage_for(item)
            item.stash[STAGE_KEY] = stage
            self.stage_of[item.nodeid] = stage
        items.sort(key=lambda item: STAGES.index(item.stash[STAGE_KEY]))

    # -- running -------------------------------------------------------------------------------

    def gates_passed(self) -> int:
        """Gates that passed; any other gate outcome has already stopped the deploy."""
        return self.outcomes["gates"]["passed"]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid: str) -> None:
        stage = self.stage_of.get(nodeid)
        if stage and stage != self.current_stage:
            self._stage_ended()
            self.current_stage = stage
            self.stage_started = time.monotonic()
            self.write(f"== stage {STAGES.index(stage) + 1}/{len(STAGES)}: {stage}")

    def progress(self, message: str) -> None:
        """A deploy's progress line, with the stage it belongs to and the seconds it has run."""
        if self.current_stage is None:
            self.write(f"   {message}")
            return
        elapsed = time.monotonic() - self.stage_started
        self.write(f"   [{self.current_stage} {elapsed:5.1f}s] {message}")

    def _stage_ended(self) -> None:
        """Say how the running stage ended, once, and call ``pytest_bluegreen_stage_ended``."""
        stage = self.current_stage
        if stage is None or stage in self.ended or self.failed_stage not in (None, stage):
            return  # none yet, said already, or one skipped after an earlier stage failed
        self.ended.add(stage)
        outcome, message = self._outcome(stage)
        elapsed = time.monotonic() - self.stage_started
        self.write(f"-- stage {stage} {outcome} in {elapsed:.1f}s")
        if self.config is not None:
            self.config.hook.pytest_bluegreen_stage_ended(
                config=self.config,
                stage=stage,
                outcome=outcome,
                duration_s=elapsed,
                message=message,
            )

    def _outcome(self, stage: str) -> tuple[str, str]:
        """A stage's outcome so far ("passed", "failed" or "skipped") and its one-line detail."""
        if self.failed_stage == stage:
            return "failed", self.error or ""
        counts = self.outcomes[stage]
        message = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if n)
        return ("passed" if counts["passed"] else "skipped"), message

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.failed_stage is not None:
            pytest.skip(f"deploy stopped: stage {self.failed_stage} failed")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        stage = self.stage_of.get(report.nodeid)
        if stage is None:
            return
        self.durations[stage] += report.duration
        self._judge(stage, report)
        if self.deployment is not None and not self.deployment.concluded:
            self._record(self.deployment, stage)

    def _judge(self, stage: str, report: pytest.TestReport) -> None:
        """Count a test's outcome: its call, or a setup or teardown that did not pass.

        The first outcome that is not a clean pass stops the deploy.
        """
        if report.when != "call" and report.passed:
            return
        if report.skipped and self.failed_stage is not None:
            return  # skipped by us, after the failure
        if report.passed and not hasattr(report, "wasxfail"):
            outcome = "passed"
        elif report.skipped and _short_reason(report.longrepr).startswith(NOT_APPLICABLE):
            outcome = "not_applicable"
        else:
            outcome = "skipped" if report.skipped else "failed"
        self.outcomes[stage][outcome] += 1
        if outcome not in ("passed", "not_applicable") and self.failed_stage is None:
            self._fail(stage, report, outcome)

    def _record(self, deployment: Deployment, stage: str) -> None:
        """The stage's outcome so far, into the deploy record."""
        outcome, message = self._outcome(stage)
        deployment.stage_done(stage, outcome, self.durations[stage], message)

    def _fail(self, stage: str, report: pytest.TestReport, outcome: str) -> None:
        self.failed_stage = stage
        self.verdict_at = time.monotonic()  # used when the switch already happened
        reason = _short_reason(report.longrepr)
        if outcome == "skipped":
            reason = f"a {stage} test was skipped, and a deploy fails closed ({reason})"
        self.error = f"stage {stage} failed: {report.nodeid}: {reason}"
        self.write(f"!! {self.error}")

    def pytest_keyboard_interrupt(self) -> None:
        """SIGINT or SIGTERM: the running stage fails, said on screen and in the record."""
        interrupted = self.failed_stage is None
        self.failed_stage = self.failed_stage or self.current_stage or "prerequisites"
        self.verdict_at = self.verdict_at or time.monotonic()
        if interrupted:
            self.error = f"stage {self.failed_stage} interrupted (SIGINT or SIGTERM)"
            self.write(f"!! {self.error}")
            if self.deployment is not None and not self.deployment.concluded:
                self._record(self.deployment, self.failed_stage)

    # -- the end -------------------------------------------------------------------------------

    def start_deployment(self) -> Deployment:
        self.deployment = self.make_deployment()
        return self.deployment

    def conclude(self) -> None:
        if self.deployment is None:
            return
        if self.failed_stage is None and self.outcomes["retire"]["passed"] == 0:
            self.failed_stage, self.error = "retire", "the deploy did not run all its stages"
        self._stage_ended()
        self.deployment.conclude(self.failed_stage, self.error, self.verdict_at)
        record = self.deployment.record
        self.write(
            f"== deploy {record.id}: {record.result} "
            f"({record.from_colour or 'none'} -> {record.to_colour}, release {record.release})"
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self._stage_ended()  # a failed last stage, when no deployment was there to conclude
        deployment = self.deployment
        if deployment is not None and deployment.record.result != "deployed":
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _within(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or inside it, as given or with symlinks resolved (site-packages)."""
    return path.is_relative_to(folder) or path.resolve().is_relative_to(folder.resolve())


def _short_reason(longrepr: object) -> str:
    """One line from a report's ``longrepr``: a crash message, or a skip's reason."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    lines = str(longrepr).strip().splitlines()
    return lines[-1] if lines else "no detail"
