"""The pytest plugin: ``--bg-*`` options, the deploy session, and fixtures for the suites.

``pytest --bg-deploy --bg-release ID`` runs the built-in stages around the gate suites and the
post-deploy suite; ``--bg-status``, ``--bg-dry-run`` and ``--bg-rollback`` do their work and exit
without collecting tests.

Installing the plugin costs a run that uses no ``--bg-*`` option almost nothing: the deploy
machinery (Docker, Compose, HAProxy, reports, testinfra, requests) is imported only by the
hooks and fixtures that use it.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

from pytest_bluegreen.core.colours import COLOURS, Colour, other_colour
from pytest_bluegreen.core.config import DESIGN_CRITICAL_PATHS, StackConfig, load_config
from pytest_bluegreen.core.errors import BluegreenError
from pytest_bluegreen.core.record import new_deploy_id
from pytest_bluegreen.core.state import load_state
from pytest_bluegreen.tracker import STAGE_KEY, STAGES, StageTracker, terminal_writer

if TYPE_CHECKING:
    from pytest_bluegreen.adapters.stack import Stack
    from pytest_bluegreen.checks.probe import Target
    from pytest_bluegreen.checks.rehearsal import MigrationRehearsal, ScratchDatabase
    from pytest_bluegreen.core.deployment import Deployment

TRACKER_KEY = pytest.StashKey[StageTracker]()
RELEASE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def release_id(value: str) -> str:
    """A release is an image tag: letters, digits, '_', '.', '-', at most 128."""
    if not RELEASE_ID.fullmatch(value):
        raise pytest.UsageError(
            f"--bg-release {value!r}: use letters, digits, '_', '.' and '-' (an image tag)"
        )
    return value


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
        "--bg-dry-run", action="store_true", help="print the deploy plan, change nothing"
    )
    group.addoption(
        "--bg-rollback", action="store_true", help="switch back to the previous colour, verified"
    )
    group.addoption(
        "--bg-status", action="store_true", help="live colour, releases, last deploy, lock"
    )
    group.addoption("--bg-target", help="URL of a running deployment, for suites/postdeploy")
    group.addoption("--bg-expect-colour", choices=COLOURS, help="colour --bg-target must serve")
    group.addoption("--bg-expect-release", help="release --bg-target must serve")
    group.addoption("--bg-ca-file", type=Path, help="CA certificate to verify --bg-target with")


def _load(config: pytest.Config) -> StackConfig:
    try:
        return load_config(
            config.rootpath,
            config.getoption("bg_config"),
            config.getoption("bg_compose_file"),
        )
    except BluegreenError as exc:
        raise pytest.UsageError(f"bluegreen: {exc}") from None


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """The commands that are not test sessions: status, dry run, rollback."""
    chosen = [o for o in ("bg_status", "bg_dry_run", "bg_rollback") if config.getoption(o)]
    if not chosen:
        return None
    if len(chosen) > 1:
        raise pytest.UsageError("use one of --bg-status, --bg-dry-run, --bg-rollback at a time")
    stack_config = _load(config)
    from pytest_bluegreen import commands

    try:
        if chosen == ["bg_status"]:
            print(commands.status(stack_config))
        elif chosen == ["bg_dry_run"]:
            print(commands.plan(stack_config, config.getoption("bg_release") or "<release>"))
        else:
            print(commands.rollback(stack_config, progress=print))
    except BluegreenError as exc:
        print(f"bluegreen: error: {exc}", file=sys.stderr)
        return 2
    return 0


@pytest.hookimpl(tryfirst=True)  # before pytest-html and junitxml read their paths
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"bluegreen_stage(name): run this test in a deploy stage ({', '.join(STAGES)})",
    )
    if not config.getoption("bg_deploy"):
        return
    if getattr(config.option, "numprocesses", None):
        raise pytest.UsageError(
            "--bg-deploy cannot run with -n (pytest-xdist): session fixtures would run once per "
            "worker; use -n with the standalone suites/postdeploy"
        )
    release = config.getoption("bg_release")
    if not release:
        raise pytest.UsageError("--bg-deploy needs --bg-release ID (the image tag to deploy)")
    stack_config = _load(config)
    explicit = config.args if config.args_source == pytest.Config.ArgsSource.ARGS else []
    suites = [*stack_config.gate_suites, stack_config.postdeploy_suite]
    for suite in suites:
        if not (stack_config.project_dir / suite).exists():
            raise pytest.UsageError(
                f"bluegreen: suite not found: {stack_config.project_dir / suite}"
            )
    config.args = [
        str(Path(__file__).with_name("stage_items.py")),
        *(str(stack_config.project_dir / suite) for suite in suites),
        *explicit,
    ]
    from pytest_bluegreen.core.deployment import Deployment

    deploy_id = new_deploy_id()
    reports = _default_reports(config, stack_config, deploy_id)

    def make_deployment() -> Deployment:
        deployment = Deployment(
            stack_config, release, progress=tracker.progress, deploy_id=deploy_id
        )
        deployment.record.reports = reports
        return deployment

    tracker = StageTracker(
        stack_config.project_dir / stack_config.postdeploy_suite, make_deployment
    )
    tracker.write = terminal_writer(config)
    config.stash[TRACKER_KEY] = tracker
    config.pluginmanager.register(tracker, "bluegreen-stages")
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


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


@pytest.fixture(scope="session")
def bluegreen_config(pytestconfig: pytest.Config) -> StackConfig:
    """The validated settings of the stack, from ``--bg-config`` and the rootdir."""
    return _load(pytestconfig)


@pytest.fixture(scope="session")
def bluegreen_stage_tracker(pytestconfig: pytest.Config) -> StageTracker:
    """The deploy session's stages and their outcomes (only with ``--bg-deploy``)."""
    tracker = pytestconfig.stash.get(TRACKER_KEY, None)
    if tracker is None:
        raise pytest.UsageError("this test needs a deploy session: run it with --bg-deploy")
    return tracker


@pytest.fixture(scope="session")
def bluegreen_deployment(bluegreen_stage_tracker: StageTracker) -> Iterator[Deployment]:
    """The deployment under way; its finalizer concludes it: done, aborted or rolled back."""
    yield bluegreen_stage_tracker.start_deployment()
    bluegreen_stage_tracker.conclude()


def _deployment(request: pytest.FixtureRequest) -> Deployment | None:
    """The deployment under way, or None outside ``--bg-deploy``."""
    if TRACKER_KEY not in request.config.stash:
        return None
    deployment: Deployment = request.getfixturevalue("bluegreen_deployment")
    return deployment


def _config(request: pytest.FixtureRequest) -> StackConfig:
    """The session's settings, loaded once by ``bluegreen_config`` and only when needed."""
    config: StackConfig = request.getfixturevalue("bluegreen_config")
    return config


def _recorded_live(config: StackConfig) -> Colour | None:
    """Outside a deploy: the live colour as recorded, else as HAProxy serves it."""
    live = load_state(config.state_file).live
    if live is None and config.admin_socket.exists():
        from pytest_bluegreen.adapters.stack import router_for

        try:
            live = router_for(config).active_colour()
        except BluegreenError:
            return None
    return live


@pytest.fixture
def bluegreen_target(
    request: pytest.FixtureRequest,
    bluegreen_colour: Colour | None,
    bluegreen_release: str | None,
) -> Target:
    """What a suite checks: the idle colour's preview route or the public URL.

    In a deploy: the idle colour during the gates, the public URL after the switch. On its own:
    ``--bg-target``, else the stack's public URL with its recorded live colour and release.
    """
    from pytest_bluegreen.checks.probe import Target

    deployment = _deployment(request)
    if deployment is not None:
        cfg = deployment.config
        stage = request.node.stash.get(STAGE_KEY, "gates")
        url = (
            cfg.public_url
            if stage in ("verify", "retire")
            else cfg.preview_url(deployment.to_colour)
        )
        return Target(url, bluegreen_colour, bluegreen_release, cfg.ca_file, cfg.critical_paths)
    url = request.config.getoption("bg_target")
    if url:
        ca_file = request.config.getoption("bg_ca_file")
        return Target(
            url.rstrip("/"), bluegreen_colour, bluegreen_release, ca_file, DESIGN_CRITICAL_PATHS
        )
    cfg = _config(request)
    ca_file = cfg.ca_file if cfg.ca_file.is_file() else None
    return Target(cfg.public_url, bluegreen_colour, bluegreen_release, ca_file, cfg.critical_paths)


@pytest.fixture(scope="session")
def bluegreen_colour(request: pytest.FixtureRequest) -> Colour | None:
    """The colour under test: the one being deployed, or standalone the live one."""
    deployment = _deployment(request)
    if deployment is not None:
        return deployment.to_colour
    expected: Colour | None = request.config.getoption("bg_expect_colour")
    if expected is not None or request.config.getoption("bg_target"):
        return expected
    return _recorded_live(_config(request))


@pytest.fixture(scope="session")
def bluegreen_release(
    request: pytest.FixtureRequest, bluegreen_colour: Colour | None
) -> str | None:
    """The release under test (None when a standalone run does not know it)."""
    deployment = _deployment(request)
    if deployment is not None:
        return deployment.release
    release: str | None = request.config.getoption("bg_expect_release")
    if release is None and bluegreen_colour and not request.config.getoption("bg_target"):
        release = load_state(_config(request).state_file).releases.get(bluegreen_colour)
    return release


@pytest.fixture
def bluegreen_live_colour(request: pytest.FixtureRequest) -> Colour | None:
    """The colour users are served by now; None before the first deploy's switch."""
    deployment = _deployment(request)
    if deployment is not None:
        return deployment.to_colour if deployment.switched else deployment.from_colour
    return _recorded_live(_config(request))


@pytest.fixture
def bluegreen_idle_url(request: pytest.FixtureRequest) -> str:
    """The preview route of the colour being deployed (standalone: of the idle colour)."""
    deployment = _deployment(request)
    if deployment is not None:
        return deployment.config.preview_url(deployment.to_colour)
    cfg = _config(request)
    live = _recorded_live(cfg)
    if live is None:
        raise pytest.UsageError("bluegreen: no live colour recorded, so no idle colour either")
    return cfg.preview_url(other_colour(live))


@pytest.fixture
def bluegreen_live_url(request: pytest.FixtureRequest) -> str:
    """The public URL, which serves the live colour: ``--bg-target`` or the stack's."""
    url = request.config.getoption("bg_target")
    return str(url).rstrip("/") if url else _config(request).public_url


@pytest.fixture(scope="session")
def bluegreen_stack(request: pytest.FixtureRequest) -> Stack:
    """The Compose stack (needs Docker): the deploy's own, or one for the settings."""
    deployment = _deployment(request)
    if deployment is not None:
        return deployment.stack
    from pytest_bluegreen.adapters.stack import Stack

    try:
        return Stack(_config(request))
    except BluegreenError as exc:
        raise pytest.UsageError(f"bluegreen: {exc}") from None


@pytest.fixture(scope="session")
def bluegreen_host(bluegreen_stack: Stack, bluegreen_colour: Colour | None) -> Callable[[str], Any]:
    """``bluegreen_host("backend")``: a testinfra host in that service's running container.

    A role ("backend", "frontend") means the service of the colour under test; any other name
    ("db", "loadbalancer") is taken as the Compose service it names.
    """
    from pytest_bluegreen.adapters.testinfra_hosts import container_host, service_name

    def host(name: str) -> Any:
        service = service_name(bluegreen_stack.config, bluegreen_colour, name)
        try:
            return container_host(bluegreen_stack, service)
        except BluegreenError as exc:
            pytest.fail(f"bluegreen_host({name!r}): {exc}")

    return host


@pytest.fixture(scope="session")
def bluegreen_rehearsal(bluegreen_deployment: Deployment) -> MigrationRehearsal:
    """The deploy's migration rehearsal: the backup restored into a scratch database."""
    try:
        return bluegreen_deployment.rehearsal()
    except BluegreenError as exc:
        pytest.fail(f"the migration rehearsal could not start: {exc}")


@pytest.fixture
def bluegreen_scratch_db(bluegreen_rehearsal: MigrationRehearsal) -> ScratchDatabase:
    """The scratch copy of the database, migrated by the release being deployed."""
    try:
        bluegreen_rehearsal.migrate()
    except BluegreenError as exc:
        pytest.fail(f"the new release's migrations fail on a copy of the database:\n{exc}")
    return bluegreen_rehearsal.scratch_database()
