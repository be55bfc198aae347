"""The migration rehearsal's own logic: the plan it reads and the errors it reports (no Docker)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomllib

from pytest_bluegreen.adapters.databases.rehearsal import (
    MigrationRehearsal,
    error_lines,
    pending_lines,
    rehearsal_env,
    remote_engine,
)
from pytest_bluegreen.adapters.engines.compose_cli import ServiceSpec
from pytest_bluegreen.adapters.engines.testinfra_hosts import service_name
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.errors import BackupError, DeployError, StackError
from pytest_bluegreen.core.ports import BackupResult, ContainerState
from tests.unit.reference import stack_config

PLAN = """\
[X]  contenttypes.0001_initial
[X]  aptos.0001_initial
[ ]  aptos.0002_builder_website
[ ]  drop_column.0001_drop_builder_founded_year
"""


def test_pending_lines_are_the_non_empty_lines_in_order() -> None:
    assert pending_lines("0003_add_notes\n\n  0004_index \n") == ["0003_add_notes", "0004_index"]
    assert pending_lines("") == []


def test_the_reference_stacks_pending_command_keeps_the_unticked_migrations() -> None:
    """Its shell pipeline, run on Django's plan, prints the pending ones in plan order."""
    settings = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["bluegreen"]
    shell, flag, pipeline = settings["migrations"]["pending_command"]
    sed = pipeline.split("| ", 1)[1]  # the part that reads `showmigrations --plan`
    out = subprocess.run(
        [shell, flag, sed], input=PLAN, capture_output=True, text=True, check=True
    ).stdout
    assert pending_lines(out) == [
        "aptos.0002_builder_website",
        "drop_column.0001_drop_builder_founded_year",
    ]


def test_error_lines_come_out_of_json_tracebacks_once_each() -> None:
    traceback = (
        "Traceback (most recent call last):\\n  File x\\n"
        "psycopg2.errors.UndefinedColumn: column aptos_builder.founded_year does not exist\\n"
        "LINE 1: ...\\n\\ndjango.db.utils.ProgrammingError: column aptos_builder.founded_year "
        'does not exist\\nLINE 1: ..., \\"aptos_builder\\".'
    )
    logs = "\n".join(
        [
            '127.0.0.1 - - "GET /api/v1/health HTTP/1.1" 200 69',
            f'{{"level": "ERROR", "message": "Internal Server Error", "exception": "{traceback}"}}',
            f'{{"level": "ERROR", "message": "Internal Server Error", "exception": "{traceback}"}}',
            "ValueError: plain text traceback line",
        ]
    )
    assert error_lines(logs) == [
        "django.db.utils.ProgrammingError: column aptos_builder.founded_year does not exist",
        "ValueError: plain text traceback line",
    ]
    assert error_lines('127.0.0.1 - - "GET / HTTP/1.1" 200') == []


def test_a_role_names_the_service_of_the_colour_under_test() -> None:
    config = stack_config(Path("/p"))
    assert service_name(config, "green", "backend") == "backend-green"
    assert service_name(config, "blue", "frontend") == "frontend-blue"
    assert service_name(config, "blue", "db") == "db"  # any other name is a service as it is
    with pytest.raises(StackError, match="no colour is under test"):
        service_name(config, None, "backend")


def test_rehearsal_env_fills_in_the_scratch_database_and_nothing_else() -> None:
    template = {
        "DATABASE_URL": "postgres://{user}@{host}:{port}/{database}",
        "JSON": '{"host": "{host}"}',
        "SHELL": "${HOME}/{unknown}",
    }
    values = {"host": "db", "port": "5432", "database": "shop", "user": "app"}
    assert rehearsal_env(template, values) == {
        "DATABASE_URL": "postgres://app@db:5432/shop",
        "JSON": '{"host": "db"}',
        "SHELL": "${HOME}/{unknown}",
    }


class FakeEngine:
    def __init__(self) -> None:
        self.status = "running"
        self.execs: list[tuple[str, list[str]]] = []

    def state(self, name: str) -> ContainerState:
        return ContainerState(name, name, self.status, None, 0 if self.status == "running" else 1)

    def logs(self, name: str, tail: int = 50) -> str:
        return "FATAL: could not write to file"

    def exec(self, name: str, command: list[str], timeout_s: int = 300) -> tuple[int, str]:
        self.execs.append((name, command))
        return 0, "shop.0002_add_notes\n"


@dataclass
class FakeStack:
    config: StackConfig
    specs: dict[str, ServiceSpec]
    engine: FakeEngine = field(default_factory=FakeEngine)
    said: list[str] = field(default_factory=list)

    @property
    def compose(self) -> Any:
        return self

    def services(self) -> dict[str, ServiceSpec]:
        return self.specs

    def progress(self, message: str) -> None:
        self.said.append(message)


class FakeCLI:
    """The docker CLI: what was created and is still there, and a step that fails."""

    def __init__(self, fail: str = "", ready_after: int = 1) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.present: set[str] = {"shop-rehearsal-green", "shop-rehearsal"}  # a killed deploy's
        self.fail, self.ready_after, self.probes = fail, ready_after, 0

    def _step(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] == self.fail:
            raise StackError(f"{call[0]} failed")

    def create_network(self, name: str, labels: Any = None) -> None:
        self._step("create_network", name)
        self.present.add(name)

    def remove_network(self, name: str) -> None:
        self._step("remove_network", name)
        self.present.discard(name)

    def remove(self, name: str) -> None:
        self._step("remove", name)
        self.present.discard(name)

    def run(self, spec: ServiceSpec, name: str, env: Any, **kwargs: Any) -> None:
        self._step("run", name, spec.image, dict(env), kwargs["network"], kwargs.get("alias"))
        self.present.add(name)

    def exec(self, name: str, argv: list[str], timeout_s: float) -> tuple[int, str]:
        self._step("exec", name, argv)
        self.probes += 1
        return (0, "") if self.probes >= self.ready_after else (2, "no response")

    def ip_on(self, name: str, network: str) -> str:
        return "172.30.0.3"


class FakeDatabase:
    container_id = "shop-rehearsal-db"
    database = "shop"

    def __init__(self, fail: bool = False) -> None:
        self.restored: list[tuple[Path, str, bool]] = []
        self.fail = fail

    def backup(self, name: str) -> BackupResult:
        raise NotImplementedError("the rehearsal takes no backup")

    def drop_database(self, database: str) -> None:
        raise NotImplementedError("the rehearsal drops no database: its server goes")

    def row_counts(self, database: str) -> dict[str, int]:
        raise NotImplementedError("the rehearsal counts no rows")

    def restore(self, path: Path, database: str, *, replace: bool = False) -> None:
        if self.fail:
            raise BackupError("pg_restore failed")
        self.restored.append((path, database, replace))

    def query(self, database: str, sql: str) -> list[tuple[str, ...]]:
        return [("1",)]


SECRET_ENV = {"POSTGRES_DB": "shop", "POSTGRES_USER": "app", "POSTGRES_PASSWORD": "pw"}
SPECS = {
    "db": ServiceSpec(
        "db", "shop-db:15", builds=True, environment=SECRET_ENV,
        healthcheck=("CMD-SHELL", "pg_isready -h 127.0.0.1"),
    ),
    "backend-green": ServiceSpec(
        "backend-green", "shop-backend:r4", builds=True,
        environment={"DATABASE_URL": "postgres://app:pw@db/shop", "BG_COLOUR": "green"},
    ),
}  # fmt: skip


def rehearsal(
    cli: FakeCLI, database: FakeDatabase, **migrations: Any
) -> tuple[MigrationRehearsal, FakeStack]:
    config = stack_config(
        Path("/p"),
        base={},
        project_name="shop",
        services={"colours": ("backend-{colour}",)},
        database={"kind": "postgres"},
        env=SECRET_ENV,
        env_file=Path("/nonexistent/.env"),
        migrations={"command": ("./manage.py", "migrate"), **migrations},
    )
    stack = FakeStack(config, SPECS)
    made = MigrationRehearsal(
        stack,  # type: ignore[arg-type]  # stands in for the concrete compose Stack
        Path("/b/r4.dump"),
        "green",
        "blue",
        docker=cli,  # type: ignore[arg-type]  # stands in for the concrete DockerCLI
        open_db=lambda config, name: database,
    )
    return made, stack


def test_prepare_starts_a_server_of_its_own_on_a_private_network_and_restores_there() -> None:
    cli, database = FakeCLI(ready_after=3), FakeDatabase()
    made, _ = rehearsal(cli, database)
    made.prepare()
    removed = [c[1] for c in cli.calls if c[0] in ("remove", "remove_network")]
    assert removed == [  # a killed deploy's, first: by name
        "shop-rehearsal-tools", "shop-rehearsal-blue", "shop-rehearsal-green",
        "shop-rehearsal-db", "shop-rehearsal",
    ]  # fmt: skip
    runs = [c for c in cli.calls if c[0] in ("create_network", "run")]
    assert runs == [
        ("create_network", "shop-rehearsal"),
        ("run", "shop-rehearsal-db", "shop-db:15", SECRET_ENV, "shop-rehearsal", "db"),
    ]
    probes = [c for c in cli.calls if c[0] == "exec"]
    assert probes == [("exec", "shop-rehearsal-db", ["sh", "-c", "pg_isready -h 127.0.0.1"])] * 3
    # Under the live database's own name, in the scratch server only.
    assert database.restored == [(Path("/b/r4.dump"), "shop", True)]
    assert set(made.seconds) == {"server", "restore"}
    assert made.scratch_database().name == "shop"


def test_the_tools_container_is_the_new_release_on_the_private_network_only() -> None:
    cli = FakeCLI()
    made, stack = rehearsal(
        cli,
        FakeDatabase(),
        rehearsal_env={"DATABASE_URL": "postgres://{user}@{host}/{database}"},
        pending_command=("./manage.py", "pending"),
    )
    made.prepare()
    assert made.migrate() == ["shop.0002_add_notes"]
    (tools,) = [c for c in cli.calls if c[0] == "run" and c[1] == "shop-rehearsal-tools"]
    assert tools[2:] == (
        "shop-backend:r4",
        {"DATABASE_URL": "postgres://app@db/shop", "BG_COLOUR": "green"},
        "shop-rehearsal",
        None,
    )
    assert [name for name, _ in stack.engine.execs] == ["shop-rehearsal-tools"] * 2


def test_a_failing_prepare_leaves_nothing_behind() -> None:
    cli = FakeCLI()
    made, stack = rehearsal(cli, FakeDatabase(fail=True))
    with pytest.raises(BackupError, match="pg_restore failed"):
        made.prepare()
    assert cli.present == set()
    assert stack.said == []


def test_a_server_that_stops_is_an_error_with_its_logs() -> None:
    cli = FakeCLI(ready_after=99)
    made, stack = rehearsal(cli, FakeDatabase())
    stack.engine.status = "exited"
    with pytest.raises(DeployError, match=r"(?s)server \(shop-db:15\) stopped .*could not write"):
        made.prepare()
    assert cli.present == set()


def test_drop_removes_everything_and_never_raises() -> None:
    cli = FakeCLI()
    made, stack = rehearsal(cli, FakeDatabase())
    made.prepare()
    cli.fail = "remove_network"
    made.drop()
    assert cli.present == {"shop-rehearsal"}
    assert stack.said == ["warning: the rehearsal's network is left: remove_network failed"]


def test_the_live_colour_on_copy_needs_a_port() -> None:
    made, _ = rehearsal(FakeCLI(), FakeDatabase())
    made.prepare()
    with pytest.raises(DeployError, match="rehearsal_port is 0"), made.live_colour_on_copy():
        pass


def test_without_a_healthcheck_the_server_is_ready_when_it_answers_a_query() -> None:
    cli, database = FakeCLI(), FakeDatabase()
    made, stack = rehearsal(cli, database)
    stack.specs = {**SPECS, "db": ServiceSpec("db", "shop-db:15", builds=True)}
    made.prepare()
    assert [c for c in cli.calls if c[0] == "exec"] == []
    assert database.restored == [(Path("/b/r4.dump"), "shop", True)]


@pytest.mark.parametrize(
    ("docker_host", "remote"),
    [
        ("", None),
        ("unix:///var/run/docker.sock", None),
        ("tcp://127.0.0.1:2375", None),
        ("tcp://172.29.0.11:2375", "tcp://172.29.0.11:2375"),
        ("ssh://deploy@manager", "ssh://deploy@manager"),
    ],
)
def test_an_engine_on_another_host_is_told_apart(docker_host: str, remote: str | None) -> None:
    # Its containers' private addresses are not reachable from here: the live colour on the
    # copy cannot be probed, and a stranger answering at that address must not pass for it.
    assert remote_engine({"DOCKER_HOST": docker_host} if docker_host else {}) == remote
