"""The ``bluegreen_*`` fixtures: what a deploy's suites and a standalone run of them check.

Registered by the plugin's ``pytest_configure`` (:mod:`pytest_bluegreen.plugin`), so
``-p no:bluegreen`` removes them too. In a ``--bg-deploy`` session they describe the deployment
under way; on their own (``pytest --bg-suite postdeploy``, ``pytest suites/postdeploy``) the
running stack, from ``--bg-target`` or the settings. Each has a docstring for
``pytest --fixtures``; a conftest may override any.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_bluegreen.core.colours import Colour, other_colour
from pytest_bluegreen.core.errors import BluegreenError
from pytest_bluegreen.session import TRACKER_KEY, load_settings

if TYPE_CHECKING:
    from pytest_bluegreen.adapters.databases.rehearsal import MigrationRehearsal, ScratchDatabase
    from pytest_bluegreen.adapters.engines.compose import ComposeStack
    from pytest_bluegreen.checks.probe import Target
    from pytest_bluegreen.core.config import StackConfig
    from pytest_bluegreen.core.deployment import Deployment
    from pytest_bluegreen.stage_tracker import StageTracker


@pytest.fixture(scope="session")
def bluegreen_config(pytestconfig: pytest.Config) -> StackConfig:
    """The validated settings of the stack, from ``--bg-config`` and the rootdir.

    A standalone check of ``--bg-target`` run where there are no settings gets the defaults.
    """
    if pytestconfig.getoption("bg_target") and not _has_settings(pytestconfig):
        from pytest_bluegreen.core.config import StackConfig

        return StackConfig(project_dir=pytestconfig.rootpath)
    return load_settings(pytestconfig)


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


def _has_settings(config: pytest.Config) -> bool:
    """Settings are named (``--bg-config``) or found: ``bluegreen.toml``, ``[tool.bluegreen]``."""
    if config.getoption("bg_config") is not None or (config.rootpath / "bluegreen.toml").exists():
        return True
    pyproject = config.rootpath / "pyproject.toml"
    if not pyproject.is_file():
        return False
    import tomllib

    try:
        tool = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True  # loading them says what is wrong
    return "bluegreen" in tool


def _recorded_live(config: StackConfig) -> Colour | None:
    """Outside a deploy: the live colour as recorded, else as HAProxy serves it."""
    from pytest_bluegreen.core.state import load_state

    live = load_state(config.state_file).live
    if live is None and config.admin_socket.exists():
        from pytest_bluegreen.adapters.routers import router_for

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
    from pytest_bluegreen.stage_tracker import STAGE_KEY

    deployment = _deployment(request)
    if deployment is not None:
        cfg = deployment.config
        stage = request.node.stash.get(STAGE_KEY, "gates")
        url = (
            cfg.public_url
            if stage in ("verify", "retire")
            else cfg.preview_url(deployment.to_colour)
        )
        return Target(
            url, bluegreen_colour, bluegreen_release, cfg.ca_file, cfg.gates.critical_paths
        )
    url = request.config.getoption("bg_target")
    if url:
        ca_file = request.config.getoption("bg_ca_file")
        paths = _config(request).gates.critical_paths  # the settings', or the default "/"
        return Target(url.rstrip("/"), bluegreen_colour, bluegreen_release, ca_file, paths)
    cfg = _config(request)
    ca_file = cfg.ca_file if cfg.ca_file is not None and cfg.ca_file.is_file() else None
    return Target(
        cfg.public_url, bluegreen_colour, bluegreen_release, ca_file, cfg.gates.critical_paths
    )


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
        from pytest_bluegreen.core.state import load_state

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
def bluegreen_stack(request: pytest.FixtureRequest) -> ComposeStack:
    """The Compose stack (needs Docker): the deploy's own, or one for the settings."""
    from pytest_bluegreen.adapters.engines.compose import ComposeStack

    deployment = _deployment(request)
    if deployment is not None:
        stack = deployment.stack
        if not isinstance(stack, ComposeStack):  # another engine: its own fixtures, not these
            raise pytest.UsageError(f"bluegreen_stack needs a Compose stack, not {stack!r}")
        return stack

    try:
        return ComposeStack(_config(request))
    except BluegreenError as exc:
        raise pytest.UsageError(f"bluegreen: {exc}") from None


@pytest.fixture(scope="session")
def bluegreen_host(
    bluegreen_stack: ComposeStack, bluegreen_colour: Colour | None
) -> Callable[[str], Any]:
    """``bluegreen_host("backend")``: a testinfra host in that service's running container.

    A role ("backend", "frontend") means the service of the colour under test; any other name
    ("db", "loadbalancer") is taken as the Compose service it names.
    """
    from pytest_bluegreen.adapters.engines.testinfra_hosts import container_host, service_name

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
    from pytest_bluegreen.adapters.databases.rehearsal import MigrationRehearsal

    try:
        rehearsal = bluegreen_deployment.rehearsal()
    except BluegreenError as exc:
        pytest.fail(f"the migration rehearsal could not start: {exc}")
    if not isinstance(rehearsal, MigrationRehearsal):  # another database kind: its own fixtures
        raise pytest.UsageError(
            f"bluegreen_rehearsal needs a Compose host's rehearsal: {rehearsal!r}"
        )
    return rehearsal


@pytest.fixture
def bluegreen_scratch_db(bluegreen_rehearsal: MigrationRehearsal) -> ScratchDatabase:
    """The scratch copy of the database, migrated by the release being deployed."""
    try:
        bluegreen_rehearsal.migrate()
    except BluegreenError as exc:
        pytest.fail(f"the new release's migrations fail on a copy of the database:\n{exc}")
    return bluegreen_rehearsal.scratch_database()
