"""The pytest plugin: the ``--bg-*`` options, the deploy session and the one-shot commands.

``pytest --bg-deploy --bg-release ID`` runs the built-in stages around the gate suites and the
post-deploy suite, each a suite shipped in the package (``bluegreen:http``, see
:mod:`pytest_bluegreen.gates`) or a path under the project; ``pytest --bg-suite postdeploy``
runs a packaged suite on its own. ``--bg-status``, ``--bg-dry-run``, ``--bg-switch``,
``--bg-rollback`` and ``--bg-retire`` run the same :mod:`pytest_bluegreen.commands` as
``bluegreen status``, ``plan``, ``switch``, ``rollback`` and ``retire``, and exit without
collecting tests.

The stages live in :mod:`pytest_bluegreen.stage_tracker`, the fixtures in
:mod:`pytest_bluegreen.fixtures`, the hooks a conftest may implement in
:mod:`pytest_bluegreen.hookspec`. Installing the plugin costs a run that uses no ``--bg-*``
option almost nothing: the deploy machinery (Docker, Compose, HAProxy, reports, testinfra,
requests), the stage tracker and the packaged gates are imported only by the hooks and
fixtures that use them.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from collections.abc import Generator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Final, Literal

import pytest

from pytest_bluegreen import hookspec
from pytest_bluegreen.core.colours import COLOURS, Colour
from pytest_bluegreen.core.errors import BluegreenError
from pytest_bluegreen.session import TRACKER_KEY, load_settings

if TYPE_CHECKING:
    from pytest_bluegreen.core.config import StackConfig
    from pytest_bluegreen.core.deployment import Deployment

FIXTURES: Final = "pytest_bluegreen.fixtures"
RELEASE_ID: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
IDLE: Final = "idle"
# The one-shot commands, as pytest options; each runs one function of pytest_bluegreen.commands.
COMMANDS: Final = ("bg_status", "bg_dry_run", "bg_switch", "bg_rollback", "bg_retire")


def release_id(value: str) -> str:
    """A release is an image tag: letters, digits, '_', '.', '-', at most 128."""
    if not RELEASE_ID.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a release: use letters, digits, '_', '.' and '-' (an image tag)"
        )
    return value


def switch_target(value: str) -> Colour | Literal["idle"]:
    """``--bg-switch``'s colour: blue, green, or "idle" (also what a bare ``--bg-switch`` means)."""
    if value == IDLE:
        return IDLE
    if value not in COLOURS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a colour: use blue or green")
    return value


def packaged_suite(value: str) -> str:
    """``--bg-suite``'s name: a suite shipped in the package, with or without ``bluegreen:``."""
    from pytest_bluegreen.gates import PREFIX, packaged_names

    name = value.removeprefix(PREFIX)
    if name not in packaged_names():
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a suite of the package: use one of {', '.join(packaged_names())}"
        )
    return name


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bluegreen", "blue-green deployment")
    group.addoption("--bg-deploy", action="store_true", help="run a blue-green deployment")
    group.addoption("--bg-release", type=release_id, help="the release (image tag) to deploy")
    group.addoption(
        "--bg-config",
        type=Path,
        default=None,
        help="settings file (default: [tool.bluegreen] in pyproject.toml, else bluegreen.toml)",
    )
    group.addoption(
        "--bg-compose-file",
        type=Path,
        action="append",
        default=None,
        help="Compose file, repeatable and layered like 'docker compose -f a -f b'",
    )
    group.addoption(
        "--bg-status", action="store_true", help="live colour, releases, last deploy, lock"
    )
    group.addoption(
        "--bg-dry-run",
        action="store_true",
        help="print the deploy plan of --bg-release, change nothing",
    )
    group.addoption(
        "--bg-switch",
        type=switch_target,
        nargs="?",
        const=IDLE,
        metavar="COLOUR",
        help="send new requests to COLOUR (default: the idle colour), under the deploy lock",
    )
    group.addoption(
        "--bg-rollback", action="store_true", help="switch back to the previous colour, verified"
    )
    group.addoption(
        "--bg-retire",
        choices=COLOURS,
        metavar="COLOUR",
        help="stop COLOUR's services (containers kept), unless it is live",
    )
    group.addoption(
        "--bg-suite",
        type=packaged_suite,
        action="append",
        default=None,
        metavar="NAME",
        help="run a suite shipped in the package on its own (postdeploy, http, ...), "
        "e.g. against --bg-target; repeatable",
    )
    group.addoption("--bg-target", help="URL of a running deployment, for a standalone suite")
    group.addoption("--bg-expect-colour", choices=COLOURS, help="colour --bg-target must serve")
    group.addoption("--bg-expect-release", help="release --bg-target must serve")
    group.addoption("--bg-ca-file", type=Path, help="CA certificate to verify --bg-target with")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """The commands that are not test sessions: status, plan, switch, rollback, retire."""
    chosen = [name for name in COMMANDS if config.getoption(name) not in (None, False)]
    if not chosen:
        return None
    if len(chosen) > 1:
        options = ", ".join("--" + name.replace("_", "-") for name in COMMANDS)
        raise pytest.UsageError(f"use one of {options} at a time")
    settings = load_settings(config)
    try:
        print(_run_command(config, chosen[0], settings))
    except BluegreenError as exc:
        print(f"bluegreen: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _run_command(config: pytest.Config, option: str, settings: StackConfig) -> str:
    """What ``bluegreen <verb>`` prints for the same command (see :mod:`pytest_bluegreen.cli`)."""
    from pytest_bluegreen import commands

    if option == "bg_status":
        return commands.status(settings)
    if option == "bg_dry_run":
        return commands.plan(settings, config.getoption("bg_release") or "<release>")
    if option == "bg_switch":
        target = config.getoption("bg_switch")
        return commands.switch(settings, None if target == IDLE else target, HookObserver(config))
    if option == "bg_rollback":
        return commands.rollback(settings, progress=print, observer=HookObserver(config))
    return commands.retire(settings, config.getoption("bg_retire"), progress=print)


class HookObserver:
    """What the deployment reports as it goes, as ``pytest_bluegreen_*`` hook calls."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def traffic_switched(self, from_colour: Colour | None, to_colour: Colour, reason: str) -> None:
        """HAProxy serves ``to_colour`` now: see ``pytest_bluegreen_traffic_switched``."""
        tracker = self.config.stash.get(TRACKER_KEY, None)
        deployment = tracker.deployment if tracker else None
        self.config.hook.pytest_bluegreen_traffic_switched(
            config=self.config,
            from_colour=from_colour,
            to_colour=to_colour,
            reason=reason,
            record=deployment.record if deployment else None,
        )


@pytest.hookimpl(tryfirst=True)  # before pytest-html and junitxml read their paths
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "bluegreen_stage(name): run this test in a deploy stage "
        "(one of pytest_bluegreen.stage_tracker.STAGES, prerequisites to retire)",
    )
    _register_fixtures(config)
    explicit = config.args if config.args_source == pytest.Config.ArgsSource.ARGS else []
    standalone = config.getoption("bg_suite")
    if standalone:
        from pytest_bluegreen.gates import PREFIX

        if config.getoption("bg_deploy"):
            raise pytest.UsageError(
                "--bg-suite runs a suite on its own; a deploy runs the settings' gate_suites "
                "and postdeploy_suite"
            )
        config.args = _suite_args(config, [PREFIX + n for n in standalone], config.rootpath)
        config.args += explicit
    if not config.getoption("bg_deploy"):
        return
    if getattr(config.option, "numprocesses", None):
        raise pytest.UsageError(
            "--bg-deploy cannot run with -n (pytest-xdist): session fixtures would run once per "
            "worker; use -n with the standalone post-deploy suite (--bg-suite postdeploy)"
        )
    release = config.getoption("bg_release")
    if not release:
        raise pytest.UsageError("--bg-deploy needs --bg-release ID (the image tag to deploy)")
    stack_config = load_settings(config)
    project_dir = stack_config.project_dir
    config.args = [
        str(Path(__file__).with_name("stage_items.py")),
        *_suite_args(
            config, [*stack_config.gates.suites, stack_config.gates.postdeploy_suite], project_dir
        ),
        *explicit,
    ]
    from pytest_bluegreen import commands
    from pytest_bluegreen.core.record import new_deploy_id
    from pytest_bluegreen.gates import resolve_suite
    from pytest_bluegreen.stage_tracker import StageTracker, terminal_writer

    deploy_id = new_deploy_id()
    reports = _default_reports(config, stack_config, deploy_id)

    def make_deployment() -> Deployment:
        deployment = commands.deployment(
            stack_config, release, tracker.progress, deploy_id, observer=HookObserver(config)
        )
        deployment.record.reports = reports
        return deployment

    postdeploy_dir = resolve_suite(stack_config.gates.postdeploy_suite, project_dir)
    tracker = StageTracker(postdeploy_dir, make_deployment, config=config)
    tracker.write = terminal_writer(config)
    config.stash[TRACKER_KEY] = tracker
    config.pluginmanager.register(tracker, "bluegreen-stages")
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def _register_fixtures(config: pytest.Config) -> None:
    """The ``bluegreen_*`` fixtures, in every run: a suite uses them without a ``--bg-*`` option.

    Registered here, not through ``pytest_plugins``: pytest would first look that name up among
    the entry points of every installed distribution, which costs more than the fixtures do.
    """
    from pytest_bluegreen import fixtures

    if not config.pluginmanager.has_plugin(FIXTURES):
        config.pluginmanager.register(fixtures, FIXTURES)


def _suite_args(config: pytest.Config, suites: list[str], project_dir: Path) -> list[str]:
    """What pytest collects for suites named as in the settings (``bluegreen:`` or a path)."""
    from pytest_bluegreen.gates import resolve_suite

    try:
        paths = [str(resolve_suite(suite, project_dir)) for suite in suites]
    except BluegreenError as exc:
        raise pytest.UsageError(f"bluegreen: {exc}") from None
    if not config.pluginmanager.has_plugin(PackagedGates.name):
        config.pluginmanager.register(PackagedGates(), PackagedGates.name)
    return list(dict.fromkeys(paths))


class PackagedGates:
    """Collects the packaged gates' test modules whatever the project's ``python_files`` says.

    A packaged gate is given to pytest as its folder, so that its items are named after their
    module ("test_http.py::test_..."), outside the rootdir as inside it.
    """

    name: Final = "bluegreen-packaged-gates"

    @pytest.hookimpl(wrapper=True)
    def pytest_collect_file(
        self, file_path: Path, parent: pytest.Collector
    ) -> Generator[None, list[pytest.Collector], list[pytest.Collector]]:
        from pytest_bluegreen.gates import is_packaged_module

        collected = yield
        if collected or not is_packaged_module(file_path):
            return collected
        return [pytest.Module.from_parent(parent, path=file_path)]


def _default_reports(config: pytest.Config, stack: StackConfig, deploy_id: str) -> dict[str, str]:
    """Every deploy leaves an HTML report and a JUnit file: under the state folder by default."""
    from pytest_bluegreen.reporting import report

    defaults = report.report_paths(stack, deploy_id)
    written = {}
    if config.pluginmanager.hasplugin("html"):
        if not config.option.htmlpath:
            config.option.htmlpath = str(defaults["html"])
            config.option.self_contained_html = True
        written["html"] = str(Path(config.option.htmlpath).resolve())
    if not getattr(config.option, "xmlpath", None):
        config.option.xmlpath = str(defaults["junit"])
    written["junit"] = str(Path(config.option.xmlpath).resolve())
    return written


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(
    prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
) -> None:
    """The deploy's sections on top of pytest-html's report."""
    tracker = session.config.stash.get(TRACKER_KEY, None)
    deployment = tracker.deployment if tracker else None
    if deployment is not None:
        from pytest_bluegreen.reporting import report

        prefix.extend(report.sections(deployment.record, deployment.config, deployment.secrets))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Mask the stack's secrets in the written reports, whatever a test printed into them."""
    tracker = config.stash.get(TRACKER_KEY, None)
    deployment = tracker.deployment if tracker else None
    paths = [getattr(config.option, option, None) for option in ("htmlpath", "xmlpath")]
    if deployment is None or not any(paths):
        return
    from pytest_bluegreen.reporting import report

    for path in paths:
        if path:
            report.redact_file(Path(path), deployment.secrets)


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends a deploy like Ctrl-C: the finalizers roll back or abort cleanly."""
    raise KeyboardInterrupt
