from __future__ import annotations

from pathlib import Path

import pytest

from pytest_bluegreen import commands
from pytest_bluegreen.cli import main
from pytest_bluegreen.core.lock import DeployLock


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "docker-compose.blue-green.yml").write_text("services: {}\n")
    return tmp_path


def test_missing_compose_file_is_a_clear_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--project-dir", str(project), "-f", "nope.yml", "up"])
    assert code == 2
    assert "compose file not found: " in capsys.readouterr().err
    assert sorted(p.name for p in project.iterdir()) == ["docker-compose.blue-green.yml"]


def test_bad_settings_are_reported_before_docker_is_touched(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    (project / "bluegreen.toml").write_text("colour = 'blue'\n")
    assert main(["--project-dir", str(project), "status"]) == 2
    assert "unknown key bluegreen.colour" in capsys.readouterr().err


def test_no_docker_daemon_is_a_clear_error_and_changes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert main(["--project-dir", str(project), "up"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Docker daemon" in err
    assert "set DOCKER_HOST" in err
    assert "scripts/" not in err  # the package names nothing that only this repository has
    assert sorted(p.name for p in project.iterdir()) == ["docker-compose.blue-green.yml"]


def test_plan_prints_the_deploy_plan_without_docker(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setattr(commands, "detect_compose_command", lambda: ["docker", "compose"])
    assert main(["--project-dir", str(project), "plan", "r9"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "plan for release r9 (dry run: nothing changed)"
    assert out[2] == "  2. colours: live none (first deploy), deploy to blue"
    assert sorted(p.name for p in project.iterdir()) == ["docker-compose.blue-green.yml"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plan"], "bluegreen plan: error: the following arguments are required: release"),
        (["plan", "r 9"], "bluegreen plan: error: argument release: 'r 9' is not a release"),
        (["rollback", "green"], "bluegreen: error: unrecognized arguments: green"),
        (["switch", "red"], "bluegreen switch: error: argument colour: invalid choice: 'red'"),
    ],
)
def test_bad_verb_arguments_are_one_error_line(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--project-dir", str(project), *argv])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(message)


def test_rollback_without_a_loadbalancer_is_a_clear_error_and_releases_the_lock(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback asks HAProxy first (Docker only to start a retired colour again)."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert main(["--project-dir", str(project), "rollback"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("bluegreen: error: HAProxy's runtime API is not reachable at ")
    assert err[-1].endswith("is the loadbalancer running?")
    assert DeployLock(project / ".bluegreen" / "deploy.lock").running() is None
