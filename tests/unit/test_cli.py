from __future__ import annotations

from pathlib import Path

import pytest

from pytest_bluegreen.cli import main


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
    assert "scripts/ensure-docker.sh" in err
    assert sorted(p.name for p in project.iterdir()) == ["docker-compose.blue-green.yml"]
