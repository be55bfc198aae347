"""``pytest --bg-<command>``: the same commands as ``bluegreen <verb>``, and their options."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_bluegreen.adapters.routers.haproxy import write_map_file
from pytest_bluegreen.cli import main
from pytest_bluegreen.core.config import load_config
from pytest_bluegreen.core.lock import DeployLock
from pytest_bluegreen.core.state import ColourState, load_state, save_state
from pytest_bluegreen.plugin import release_id, switch_target
from tests.unit.fake_haproxy import FakeRuntimeAPI


@pytest.fixture
def settings() -> Iterator[Path]:
    """A stack's settings file, its state blue live with release r1 (no Docker, no HAProxy)."""
    # Unix socket paths are limited to about 100 bytes; tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="bg") as name:
        home = Path(name)
        (home / "compose.yml").write_text("services: {}\n")
        path = home / "bluegreen.toml"
        path.write_text(f'compose_files = ["{home / "compose.yml"}"]\nstate_dir = "{home / "s"}"\n')
        config = load_config(home, path)
        config.lb_state_dir.mkdir(parents=True)
        write_map_file(config.map_file, "blue")
        save_state(config.state_file, ColourState(live="blue", releases={"blue": "r1"}))
        yield path


@pytest.fixture
def haproxy(settings: Path) -> Iterator[FakeRuntimeAPI]:
    config = load_config(settings.parent, settings)
    api = FakeRuntimeAPI(config.admin_socket, "/var/lib/bluegreen/active.map")
    yield api
    api.close()


def bg_pytest(pytester: pytest.Pytester, settings: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "--bg-config", str(settings), *args)


@pytest.mark.parametrize("value", ["blue", "green", "idle"])
def test_switch_target_takes_a_colour_or_idle(value: str) -> None:
    assert switch_target(value) == value


@pytest.mark.parametrize("value", ["", "Blue", "red", "blue,green"])
def test_switch_target_refuses_anything_else(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a colour: use blue or green"):
        switch_target(value)


@pytest.mark.parametrize("value", ["r1", "v1.2.3", "2026-12-02_rc.1", "_", "a" * 128])
def test_release_id_takes_an_image_tag(value: str) -> None:
    assert release_id(value) == value


@pytest.mark.parametrize("value", ["", "-r1", ".r1", "r 1", "r/1", "r:1", "a" * 129])
def test_release_id_refuses_what_is_no_image_tag(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a release: use letters"):
        release_id(value)


def test_bg_switch_without_a_colour_goes_to_the_idle_one(
    pytester: pytest.Pytester, settings: Path, haproxy: FakeRuntimeAPI
) -> None:
    result = bg_pytest(pytester, settings, "--bg-switch")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["switched blue -> green in * ms (preflight *"])
    assert haproxy.colour == "green"
    assert load_state(settings.parent / "s" / "state.json").live == "green"


def test_bg_switch_calls_the_traffic_switched_hook(
    pytester: pytest.Pytester, settings: Path, haproxy: FakeRuntimeAPI
) -> None:
    pytester.makeconftest(
        """
        import json

        def pytest_bluegreen_traffic_switched(config, from_colour, to_colour, reason, record):
            with open("moved.json", "w") as out:
                json.dump([from_colour, to_colour, reason, record], out)
        """
    )
    assert bg_pytest(pytester, settings, "--bg-switch").ret == 0
    moved = json.loads((pytester.path / "moved.json").read_text())
    assert moved == ["blue", "green", "manual", None]


def test_bg_switch_takes_a_colour(
    pytester: pytest.Pytester, settings: Path, haproxy: FakeRuntimeAPI
) -> None:
    assert bg_pytest(pytester, settings, "--bg-switch", "green").ret == 0
    assert haproxy.colour == "green"


def test_bg_switch_with_a_wrong_colour_is_a_usage_error(
    pytester: pytest.Pytester, settings: Path
) -> None:
    result = bg_pytest(pytester, settings, "--bg-switch", "red")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --bg-switch: 'red' is not a colour: use blue or green"])


def test_bg_status_prints_what_bluegreen_status_prints(
    pytester: pytest.Pytester,
    settings: Path,
    haproxy: FakeRuntimeAPI,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = bg_pytest(pytester, settings, "--bg-status")
    assert result.ret == 0
    capsys.readouterr()
    assert main(["--project-dir", str(pytester.path), "--config", str(settings), "status"]) == 0
    assert result.stdout.lines == capsys.readouterr().out.splitlines()
    assert result.stdout.lines[0] == "live colour: blue (HAProxy runtime API)"


@pytest.mark.parametrize("command", [["--bg-rollback"], ["--bg-retire", "green"]])
def test_a_command_that_cannot_reach_docker_is_one_error_line(
    pytester: pytest.Pytester,
    settings: Path,
    haproxy: FakeRuntimeAPI,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    """In a subprocess: pytester's in-process run takes exit status 2 for a Ctrl-C.

    The rollback reaches Docker only to start its colour again: here green was retired.
    """
    config = load_config(settings.parent, settings)
    retired = ColourState(live="blue", releases={"blue": "r1", "green": "r0"}, retired={"green"})
    save_state(config.state_file, retired)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--bg-config", str(settings), *command
    )
    assert result.ret == 2
    result.stderr.fnmatch_lines(["bluegreen: error: cannot reach the Docker daemon*"])
    assert haproxy.colour == "blue"
    assert DeployLock(settings.parent / "s" / "deploy.lock").running() is None


def test_a_hot_rollback_moves_traffic_before_it_needs_docker(
    pytester: pytest.Pytester,
    settings: Path,
    haproxy: FakeRuntimeAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Green still runs: one round trip to HAProxy, and no Docker, before traffic is back.

    Nothing answers on the public URL here, so the proof that green serves fails afterwards.
    """
    config = load_config(settings.parent, settings)
    save_state(config.state_file, ColourState(live="blue", releases={"blue": "r1", "green": "r0"}))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--bg-config", str(settings), "--bg-rollback"
    )
    assert result.ret == 2
    result.stderr.fnmatch_lines(["bluegreen: error: rolled back to green, but it does not serve*"])
    map_name = "/var/lib/bluegreen/active.map"
    assert haproxy.lines[0] == (
        f"show map {map_name};show stat -1 4 -1;set map {map_name} active green;show map {map_name}"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--bg-status", "--bg-switch"],
        ["--bg-dry-run", "--bg-rollback"],
        ["--bg-retire", "blue", "--bg-status"],
    ],
)
def test_one_command_at_a_time(pytester: pytest.Pytester, settings: Path, args: list[str]) -> None:
    result = bg_pytest(pytester, settings, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*use one of --bg-status, --bg-dry-run, --bg-switch, --bg-rollback, --bg-retire at a time"]
    )


def test_bg_retire_needs_a_colour(pytester: pytest.Pytester, settings: Path) -> None:
    result = bg_pytest(pytester, settings, "--bg-retire", "red")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --bg-retire: invalid choice: 'red'*"])
