"""Containers started outside Compose: the env file, the docker run line, the CLI's bounds."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.adapters.engines.compose_cli import ServiceSpec
from pytest_bluegreen.adapters.engines.docker_run import (
    DockerCLI,
    env_file_text,
    private_env_file,
    run_argv,
)
from pytest_bluegreen.core.errors import CommandTimeout, StackError

SECRET = "s3cr3t value with spaces=and#hash"


def test_the_env_file_is_private_literal_and_gone_afterwards(tmp_path: Path) -> None:
    with private_env_file({"POSTGRES_PASSWORD": SECRET, "EMPTY": ""}, tmp_path) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() == f"POSTGRES_PASSWORD={SECRET}\nEMPTY=\n"
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_the_env_file_is_removed_when_the_block_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), private_env_file({"A": "1"}, tmp_path) as path:
        raise RuntimeError("docker run failed")
    assert not path.exists()


def test_a_value_on_several_lines_is_refused_without_showing_it() -> None:
    with pytest.raises(StackError, match="the value of CERT spans lines") as caught:
        env_file_text({"CERT": "-----BEGIN-----\nMIIB"})
    assert "MIIB" not in str(caught.value)
    with pytest.raises(StackError, match="cannot go into an env file"):
        env_file_text({"A=B": "1"})


SPEC = ServiceSpec(
    "backend-green",
    "shop-backend:r4",
    builds=True,
    environment={"POSTGRES_PASSWORD": SECRET},
    entrypoint=("/docker-entrypoint.sh", "--wait"),
    command=("gunicorn", "app"),
    user="10001:10001",
    working_dir="/app",
    init=True,
)


def test_the_run_line_attaches_one_network_and_carries_no_value() -> None:
    argv = run_argv(
        SPEC,
        "shop-rehearsal-tools",
        network="shop-rehearsal",
        env_file=Path("/tmp/bg-env-x.env"),
        command=("sleep", "1800"),
        labels={"bluegreen.rehearsal": "shop"},
    )
    assert argv == [
        "run", "-d", "--name", "shop-rehearsal-tools", "--network", "shop-rehearsal",
        "--env-file", "/tmp/bg-env-x.env", "--label", "bluegreen.rehearsal=shop",
        "--user", "10001:10001", "--workdir", "/app", "--init",
        "--entrypoint", "/docker-entrypoint.sh",
        "shop-backend:r4", "--wait", "sleep", "1800",
    ]  # fmt: skip
    assert SECRET not in " ".join(argv)
    assert not {"-e", "--env", "-v", "--volume", "-p"} & set(argv)


def test_the_run_line_keeps_the_images_defaults_unless_the_service_sets_them() -> None:
    plain = ServiceSpec("db", "shop-db:15", builds=True)
    argv = run_argv(plain, "x-db", network="x-rehearsal", env_file=Path("/e"), alias="db")
    assert argv == [
        "run", "-d", "--name", "x-db", "--network", "x-rehearsal", "--env-file", "/e",
        "--network-alias", "db", "shop-db:15",
    ]  # fmt: skip
    reset = ServiceSpec("db", "shop-db:15", builds=True, entrypoint=(), command=("postgres",))
    argv = run_argv(reset, "x-db", network="n", env_file=Path("/e"))
    assert argv[-3:] == ["", "shop-db:15", "postgres"]  # `entrypoint: []` clears the image's


class FakeDocker:
    """Records the docker CLI's calls; what an env file held at the moment docker ran."""

    def __init__(self, returncode: int = 0, output: str = "", hang: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.env_files: dict[str, tuple[int, str]] = {}
        self.returncode, self.output, self.hang = returncode, output, hang

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        assert kwargs["timeout"] > 0
        if "--env-file" in argv:
            path = Path(argv[argv.index("--env-file") + 1])
            self.env_files[str(path)] = (stat.S_IMODE(path.stat().st_mode), path.read_text())
        if self.hang and argv[1] == "run":
            raise subprocess.TimeoutExpired(argv, kwargs["timeout"])
        return subprocess.CompletedProcess(argv, self.returncode, self.output, "")


def test_run_passes_the_environment_through_a_private_file_removed_after() -> None:
    fake = FakeDocker()
    DockerCLI(timeout_s=30, run_process=fake).run(
        SPEC, "shop-rehearsal-tools", {"POSTGRES_PASSWORD": SECRET}, network="shop-rehearsal"
    )
    ((path, (mode, text)),) = fake.env_files.items()
    assert (mode, text) == (0o600, f"POSTGRES_PASSWORD={SECRET}\n")
    assert not Path(path).exists()
    assert SECRET not in " ".join(fake.calls[0])


def test_a_run_past_its_bound_removes_its_container() -> None:
    fake = FakeDocker(hang=True)
    with pytest.raises(CommandTimeout, match=r"starting x-db \(shop-db:15\) did not finish"):
        DockerCLI(timeout_s=5, run_process=fake).run(
            ServiceSpec("db", "shop-db:15", builds=True), "x-db", {}, network="n"
        )
    assert fake.calls[-1] == ["docker", "rm", "-f", "-v", "x-db"]
    assert all(not Path(p).exists() for p in fake.env_files)


def test_removing_what_is_already_gone_is_no_error() -> None:
    gone = FakeDocker(1, "Error: No such container: x-db")
    DockerCLI(run_process=gone).remove("x-db")
    DockerCLI(run_process=FakeDocker(1, "Error: No such network: x-rehearsal")).remove_network("n")
    with pytest.raises(StackError, match=r"cannot remove the network n: .*has active endpoints"):
        DockerCLI(run_process=FakeDocker(1, "error: has active endpoints")).remove_network("n")


def test_the_network_is_internal() -> None:
    fake = FakeDocker()
    DockerCLI(run_process=fake).create_network("x-rehearsal", {"bluegreen.rehearsal": "x"})
    assert fake.calls == [
        ["docker", "network", "create", "--internal", "--label", "bluegreen.rehearsal=x",
         "x-rehearsal"],
    ]  # fmt: skip


def test_an_exec_past_its_bound_answers_124() -> None:
    def hang(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    code, output = DockerCLI(run_process=hang).exec("x-db", ["pg_isready"], timeout_s=3)
    assert code == 124
    assert "did not finish within 3s" in output
