from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen import compose as compose_module
from pytest_bluegreen.compose import Compose, detect_compose_command
from pytest_bluegreen.errors import ComposeError, DockerUnavailable


def completed(returncode: int, stdout: str = "", stderr: str = "") -> Any:
    return subprocess.CompletedProcess(args=[], returncode=returncode, stdout=stdout, stderr=stderr)


def test_prefers_compose_v2_when_the_plugin_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compose_module.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert detect_compose_command(lambda *a, **k: completed(0)) == ("docker", "compose")


def test_falls_back_to_v1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compose_module.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert detect_compose_command(lambda *a, **k: completed(1)) == ("docker-compose",)


def test_no_compose_at_all_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compose_module.shutil, "which", lambda name: None)
    with pytest.raises(
        DockerUnavailable, match=r"neither 'docker compose' .* nor 'docker-compose'"
    ):
        detect_compose_command(lambda *a, **k: completed(1))


class Recorder:
    def __init__(self, result: Any) -> None:
        self.result = result
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> Any:
        self.calls.append((argv, kwargs))
        return self.result


def make(recorder: Recorder, command: tuple[str, ...] = ("docker-compose",)) -> Compose:
    return Compose(
        command=command,
        files=(Path("/p/base.yml"), Path("/p/override.yml")),
        project_name="shop",
        project_dir=Path("/p"),
        env={"A": "1"},
        run_process=recorder,
    )


def test_layers_files_in_order_and_passes_the_environment() -> None:
    recorder = Recorder(completed(0))
    make(recorder, ("docker", "compose")).up(["backend-green"])
    argv, kwargs = recorder.calls[0]
    assert argv == [
        "docker", "compose", "--project-name", "shop",
        "-f", "/p/base.yml", "-f", "/p/override.yml",
        "up", "-d", "--no-build", "--no-deps", "backend-green",
    ]  # fmt: skip
    assert kwargs["env"] == {"A": "1"}
    assert kwargs["cwd"] == Path("/p")


def test_failure_carries_the_command_and_its_output() -> None:
    recorder = Recorder(completed(1, stderr="ERROR: No such service: nope\n"))
    with pytest.raises(ComposeError, match=r"'up -d --no-build --no-deps nope' failed \(exit 1\)"):
        make(recorder).up(["nope"])
    with pytest.raises(ComposeError, match="No such service: nope"):
        make(recorder).up(["nope"])


def test_timeout_becomes_a_compose_error() -> None:
    def slow(argv: list[str], **kwargs: Any) -> Any:
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    compose = Compose(("docker-compose",), (), "p", Path("/p"), {}, run_process=slow)
    with pytest.raises(ComposeError, match="did not finish within 60s"):
        compose.validate()


def test_one_off_containers_get_their_environment_as_flags() -> None:
    recorder = Recorder(completed(0))
    compose = make(recorder)
    compose.run_once("backend-green", ["python3", "manage.py", "migrate"], env={"DB": "x_copy"})
    compose.run_detached("backend-blue", "shop-rehearsal-blue", {"DB": "x_copy"})
    assert recorder.calls[0][0][7:] == [
        "run", "--rm", "--no-deps", "-T", "-e", "DB=x_copy",
        "backend-green", "python3", "manage.py", "migrate",
    ]  # fmt: skip
    assert recorder.calls[1][0][7:] == [
        "run", "-d", "--no-deps", "--name", "shop-rehearsal-blue", "-e", "DB=x_copy",
        "backend-blue",
    ]  # fmt: skip


def test_v1_build_removes_the_containers_of_failed_steps() -> None:
    v1, v2 = Recorder(completed(0)), Recorder(completed(0))
    make(v1, ("docker-compose",)).build(["backend-green"])
    make(v2, ("docker", "compose")).build(["backend-green"])
    assert v1.calls[0][0][-3:] == ["build", "--force-rm", "backend-green"]
    assert v2.calls[0][0][-2:] == ["build", "backend-green"]
