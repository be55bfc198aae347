"""``pytest --bg-deploy`` on a real stack: deploys, aborts, rollbacks, the lock, the commands.

The tests run in file order on one stack (Compose project ``bgdeploy``, loopback ports 28xxx),
each starting from whatever colour the previous one left live.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.adapters.databases.postgres import DatabaseBackup
from pytest_bluegreen.core.colours import Colour, other_colour
from pytest_bluegreen.core.lock import DeployLock
from pytest_bluegreen.core.record import DeployRecord, RecordStore
from pytest_bluegreen.core.state import load_state
from tests.harness import NOISY_P99, StackUser, Throwaway, ports, short_home, throwaway_stack
from tests.images import ThrowawayImages


@dataclass
class DeployHost(StackUser):
    """The stack under test, and ``pytest`` with the plugin run on it as a user runs it."""

    last = StackUser.last_record

    def pytest(
        self, *args: str, compose: list[Path] | None = None, settings: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run pytest with the plugin as a user would, its output's end shown with the test's."""
        result = self.run(*args, compose=compose, settings=settings)
        print(result.stdout[-6000:], result.stderr[-3000:], sep="\n")
        return result

    def deploy(
        self,
        release: str,
        *tests: str,
        compose: list[Path] | None = None,
        settings: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return self.pytest(
            "--bg-deploy", "--bg-release", release, *tests, compose=compose, settings=settings
        )

    def running(self, colour: Colour) -> bool:
        services = self.stack.config.services.services_of(colour)
        return self.stack.running_services(services) == list(services)

    def schema_and_rows(self) -> tuple[list[tuple[str, ...]], dict[str, int]]:
        """Every column of the real database, and the rows of every table."""
        database = self.database()
        columns = database.query(
            database.database,
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2",
        )
        return columns, database.row_counts(database.database)


def compose_override(home: Path, name: str, service_yaml: str) -> Path:
    """A Compose file that changes both backends the same way (only the idle one is recreated)."""
    body = "services:\n" + "".join(
        f"  backend-{colour}:\n" + service_yaml for colour in ("blue", "green")
    )
    path = home / f"{name}.yml"
    path.write_text(body)
    return path


@pytest.fixture(scope="module")
def host(throwaway_images: ThrowawayImages) -> Iterator[DeployHost]:
    """An empty host: no containers, no volumes, no state."""
    with short_home("bgdep-") as home:
        throwaway = Throwaway("bgdeploy", home, ports(28000), settings=NOISY_P99)
        with throwaway_stack(throwaway, images=throwaway_images) as stack:
            yield DeployHost(throwaway, stack)


def test_the_first_deploy_on_an_empty_host(host: DeployHost) -> None:
    result = host.deploy("initial")
    assert result.returncode == 0
    record = host.last()
    assert (record.result, record.from_colour, record.to_colour) == ("deployed", None, "blue")
    assert record.backup is not None  # even the empty database is backed up and verified
    assert host.answer() == ("blue", "initial")
    api = requests.get(
        host.stack.config.public_url + "/api/v1/aptos/",
        verify=str(host.stack.config.ca_file),
        timeout=10,
    )
    assert api.json()["count"] > 0  # migrated and seeded


def test_two_deploys_in_a_row(host: DeployHost) -> None:
    assert host.answer() == ("blue", "initial")

    first = host.deploy("r1", "examples/own_gates", "-v")  # with the example of own gates
    assert first.returncode == 0
    for test in (
        "test_no_builder_lost_its_name",
        "test_the_new_colour_names_itself",
        "test_users_still_get_the_live_colour",
        "test_gunicorn_serves_with_two_workers",
    ):
        assert f"examples/own_gates/test_own_gates.py::{test} PASSED" in first.stdout
    record = host.last()
    assert (record.result, record.from_colour, record.to_colour) == ("deployed", "blue", "green")
    assert host.answer() == ("green", "r1")
    assert [stage.name for stage in record.stages] == [
        "prerequisites", "colours", "backup", "build", "migration", "bring_up", "gates", "switch",
        "verify", "bake", "retire",
    ]  # fmt: skip
    assert all(stage.outcome == "passed" for stage in record.stages), record.stages
    assert record.switch is not None
    assert record.switch["total_ms"] < 1000
    assert f"== deploy {record.id}: deployed" in first.stdout

    # The switch happened under load, through both keep-alive and new connections.
    assert record.load is not None
    assert record.load["total"]["requests"] >= 60  # 4 users x 5 req/s for 6 s, when not starved
    assert record.load["total"]["failures"] == 0
    assert record.load["first_second"]["requests"] > 0
    assert record.load["old_colour_after_switch"] == 0
    assert len(record.load["series"]) >= 6

    second = host.deploy("r2")
    assert second.returncode == 0
    record = host.last()
    assert (record.result, record.from_colour, record.to_colour) == ("deployed", "green", "blue")
    assert host.answer() == ("blue", "r2")
    state = load_state(host.stack.config.state_file)
    assert (state.live, state.releases) == ("blue", {"blue": "r2", "green": "r1"})
    deploys = sorted((host.stack.config.state_dir / "deploys").glob("*.json"))
    assert len(deploys) == 3  # the first deploy, then these two


def test_the_backup_restores_and_its_checksum_matches(host: DeployHost) -> None:
    record = host.last()
    assert record.backup is not None
    dump = Path(record.backup["file"])
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == record.backup["sha256"]
    assert dump.read_bytes()[:5] == b"PGDMP"
    (db,) = host.stack.container_ids("db")
    env = host.stack.config.environment
    backup = DatabaseBackup(db, env["POSTGRES_DB"], env["POSTGRES_USER"], dump.parent)
    try:
        backup.restore(dump, "bg_restore_check")
        assert backup.row_counts("bg_restore_check") == record.backup["row_counts"]
    finally:
        backup.drop_database("bg_restore_check")
    assert sum(record.backup["row_counts"].values()) > 0


def assert_aborted_by(
    host: DeployHost,
    result: subprocess.CompletedProcess[str],
    stage: str,
    test: str,
    before: tuple[str, str],
) -> DeployRecord:
    """Stopped by ``test`` in ``stage``, before the switch: users kept the live colour."""
    assert result.returncode != 0
    record = host.last()
    assert record.result == "aborted"
    assert {s.name: s.outcome for s in record.stages}[stage] == "failed", record.stages
    assert f"stage {stage} failed: {test}" in (record.error or "")
    assert host.answer() == before
    return record


def test_a_release_running_as_root_is_stopped_by_the_infra_gate(host: DeployHost) -> None:
    """The other gates' broken releases are scenarios (scenarios/library.py)."""
    before = host.answer()
    root = host.idle_override("runs-as-root", '    user: "0:0"\n')
    result = host.deploy("runs-as-root", compose=[root])
    test = "suites/infra/test_infra.py::test_no_process_runs_as_root[backend]"
    record = assert_aborted_by(host, result, "gates", test, before)
    assert "runs as root (uid 0)" in (record.error or "")
    idle = other_colour(host.live())
    assert host.stack.running_services(host.stack.config.services.services_of(idle)) == []


def test_a_migration_that_breaks_the_live_colour_never_reaches_the_database(
    host: DeployHost,
) -> None:
    before = host.answer()
    schema, rows = host.schema_and_rows()
    assert ("aptos_builder", "founded_year", "smallint") in schema
    drop = host.idle_override("drop", "    environment:\n      APTOS_MIGRATIONS: drop-column\n")
    result = host.deploy("drop-column", compose=[drop])
    record = assert_aborted_by(
        host,
        result,
        "migration",
        "suites/migration/test_migration.py::test_live_colour_works_on_the_migrated_copy",
        before,
    )
    assert "breaks on the schema the new release migrates to" in (record.error or "")
    assert "column aptos_builder.founded_year does not exist" in result.stdout
    assert record.migration is not None
    assert record.migration["applied"] == ["drop_column.0001_drop_builder_founded_year"]
    assert {s.name: s.outcome for s in record.stages}["bring_up"] == "skipped"
    # The real database: same schema, same rows; the scratch copy and its containers are gone.
    assert host.schema_and_rows() == (schema, rows)
    database = host.database()
    names = [row[0] for row in database.query("postgres", "SELECT datname FROM pg_database")]
    assert not [name for name in names if name.endswith("_rehearsal")]
    assert (
        "rehearsal"
        not in containers_snapshot("bgdeploy")
        + subprocess.run(
            ["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True
        ).stdout
    )


def test_an_additive_migration_is_rehearsed_then_applied(host: DeployHost) -> None:
    live, _ = host.answer()
    add = host.idle_override("add-column", "    environment:\n      APTOS_MIGRATIONS: add-column\n")
    result = host.deploy("add-column", compose=[add])
    assert result.returncode == 0
    record = host.last()
    assert record.result == "deployed"
    assert record.migration is not None
    assert record.migration["applied"] == ["add_column.0001_add_builder_website"]
    assert host.answer() == (other_colour(live), "add-column")
    schema, _ = host.schema_and_rows()
    assert ("aptos_builder", "website", "character varying") in schema


def container_names() -> list[str]:
    """This project's containers on the engine (its rehearsal's included), running or not."""
    listing = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, check=True
    )
    return sorted(name for name in listing.stdout.split() if name.startswith("bgdeploy"))


def test_a_hung_migration_is_stopped_at_its_bound_and_leaves_no_container(
    host: DeployHost,
) -> None:
    before = host.answer()
    schema, rows = host.schema_and_rows()
    containers = container_names()
    hung = host.settings_with("hung", 'migrate_command = ["sleep", "600"]\ncommand_timeout_s = 5')
    started = time.monotonic()
    result = host.deploy("hung-migration", settings=hung)
    took = time.monotonic() - started
    record = assert_aborted_by(
        host,
        result,
        "migration",
        "suites/migration/test_migration.py::test_migrations_apply_to_a_copy",
        before,
    )
    assert "'sleep 600' did not finish within 5s (command_timeout_s)" in result.stdout
    assert took < 240, f"the deploy took {took:.0f}s: the bound did not hold"
    assert {s.name: s.outcome for s in record.stages}["bring_up"] == "skipped"
    assert host.schema_and_rows() == (schema, rows)
    assert container_names() == containers, "a container of the hung deploy was left"


def test_a_hung_migration_of_the_real_database_is_killed_with_its_one_off_container(
    host: DeployHost,
) -> None:
    """Without the rehearsal gate, bring_up's own migration (a Compose one-off run) hangs."""
    before = host.answer()
    containers = container_names()
    hung = host.settings_with(
        "hung-live",
        'migrate_command = ["sleep", "600"]\ncommand_timeout_s = 5\ngate_suites = ["suites/smoke"]',
    )
    result = host.deploy("hung-live-migration", settings=hung)
    assert result.returncode != 0
    record = host.last()
    assert record.result == "aborted"
    assert {s.name: s.outcome for s in record.stages}["bring_up"] == "failed"
    assert "did not finish within 5s; its container was removed (engine.command_timeout_s: 5s)" in (
        record.error or ""
    )
    assert host.answer() == before
    assert container_names() == containers, "the one-off migration container was left"


def test_a_shared_service_is_started_when_absent_and_never_restarted(host: DeployHost) -> None:
    """A cache both colours use: started by the first deploy that finds it absent, then left."""
    image = os.environ.get("BASE_IMAGE", "debian:bookworm-slim")
    cache = host.home / "cache.yml"
    cache.write_text(
        f'services:\n  cache:\n    image: {image}\n    command: ["sleep", "infinity"]\n'
    )

    def cache_container() -> tuple[str, str]:
        (container,) = host.stack.container_ids("cache", running_only=True)
        started = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.StartedAt}}", container],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        return container, started

    assert host.stack.container_ids("cache") == []
    try:
        assert host.deploy("with-cache", compose=[cache]).returncode == 0
        first = cache_container()
        assert host.deploy("with-cache-2", compose=[cache]).returncode == 0
        assert cache_container() == first  # the same container, never restarted
        assert host.last().result == "deployed"
    finally:
        for container in host.stack.container_ids("cache"):
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def test_a_release_failing_after_the_switch_is_rolled_back(host: DeployHost) -> None:
    """Without load, the post-deploy suite is what catches it."""
    live, release = host.answer()
    broken = compose_override(
        host.home, "public-errors", "    environment:\n      APTOS_FAULT: public-api-errors\n"
    )
    no_load = host.settings_with("no-load", "load_users = 0")
    result = host.deploy("broken-public", compose=[broken], settings=no_load)
    assert result.returncode != 0
    record = host.last()
    assert record.result == "rolled_back"
    outcomes = {s.name: s.outcome for s in record.stages}
    assert (outcomes["gates"], outcomes["switch"], outcomes["verify"]) == (
        "passed",
        "passed",
        "failed",
    )
    assert record.rollback_s is not None
    assert record.rollback_s < 1.0
    assert record.rollback_verified_s is not None
    assert host.answer() == (live, release)
    assert host.live() == live
    services = host.stack.config.services.services_of(other_colour(live))
    assert host.stack.running_services(services) == []


def test_a_second_deploy_is_refused_while_one_runs(host: DeployHost) -> None:
    before = host.answer()
    lock = DeployLock(host.stack.config.lock_file)
    lock.acquire("20990101T000000Z-abcdef", "2099-01-01T00:00:00Z")
    try:
        result = host.deploy("r-refused")
    finally:
        lock.release()
    assert result.returncode != 0
    assert (
        "another deploy is running on this stack: deploy 20990101T000000Z-abcdef" in result.stdout
    )
    assert host.answer() == before


def tree_snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(folder.rglob("*"))
        if not p.is_socket()
    }


def containers_snapshot(project: str) -> str:
    return subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
         "--format", "{{.ID}} {{.State}} {{.Image}}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_dry_run_prints_the_plan_and_changes_nothing(host: DeployHost) -> None:
    state_dir = host.stack.config.state_dir
    files, containers = tree_snapshot(state_dir), containers_snapshot("bgdeploy")
    result = host.pytest("--bg-dry-run", "--bg-release", "r9")
    assert result.returncode == 0
    idle = other_colour(host.live())
    assert f"deploy to {idle}" in result.stdout
    assert f"{idle.upper()}_RELEASE=r9" in result.stdout
    assert "11. retire" in result.stdout
    assert tree_snapshot(state_dir) == files
    assert containers_snapshot("bgdeploy") == containers


def test_status_then_rollback(host: DeployHost) -> None:
    live, release = host.answer()
    idle = other_colour(live)
    status = host.pytest("--bg-status")
    assert status.returncode == 0
    assert f"live colour: {live} (HAProxy runtime API)" in status.stdout
    assert f"{idle} release: none" in status.stdout  # the failed releases are no rollback target
    assert "deploy running: no" in status.stdout
    refused = host.pytest("--bg-rollback")
    assert refused.returncode == 2
    assert f"{idle} never ran a release here: nothing to roll back to" in refused.stderr
    assert host.answer() == (live, release)

    # Within the retire window the old colour still runs: the rollback is a runtime-API switch.
    delayed = host.settings_with("retire-later", "retire_delay_s = 4")
    assert host.deploy("r3", settings=delayed).returncode == 0
    assert host.answer() == (idle, "r3")
    assert host.running(live)
    result = host.pytest("--bg-rollback")
    assert result.returncode == 0, result.stderr
    assert host.answer() == (live, release)
    record = host.last()
    assert (record.result, record.release, record.to_colour) == ("rolled_back", release, live)
    assert record.rollback_s is not None
    assert record.rollback_s < 0.5
    status = host.pytest("--bg-status")
    assert f"live colour: {live} (HAProxy runtime API)" in status.stdout
    time.sleep(6)  # the detached retire has run by now, and must have left the live colour alone
    assert host.running(live)
    assert host.answer() == (live, release)


def test_a_delayed_retire_stops_the_old_colour_later(host: DeployHost) -> None:
    live, _ = host.answer()
    delayed = host.settings_with("retire-later", "retire_delay_s = 2")
    assert host.deploy("r4", settings=delayed).returncode == 0
    assert host.running(live)  # kept for the window
    deadline = time.monotonic() + 30
    while host.running(live) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not host.running(live)
    assert host.answer() == (other_colour(live), "r4")


def test_rollback_starts_a_retired_colour(host: DeployHost) -> None:
    live, _ = host.answer()
    old = other_colour(live)
    assert not host.running(old)
    old_release = load_state(host.stack.config.state_file).releases[old]
    result = host.pytest("--bg-rollback")
    assert result.returncode == 0, result.stderr
    assert host.answer() == (old, old_release)
    assert host.last().rollback_verified_s is not None


SLOW_CHECK = """
import time

import pytest


@pytest.mark.bluegreen_stage("verify")
def test_a_slow_post_deploy_check():
    time.sleep(90)
"""


def start_deploy_held_in_verify(
    host: DeployHost, release: str
) -> tuple[subprocess.Popen[str], DeployRecord]:
    """Start a deploy whose verify stage hangs; return it once its switch has happened."""
    slow = host.home / "slow" / "test_slow_check.py"
    slow.parent.mkdir(exist_ok=True)
    slow.write_text(SLOW_CHECK)
    proc = host.start("--bg-deploy", "--bg-release", release, str(slow))
    store = RecordStore(host.stack.config.state_dir)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        records = store.history(1)
        if records and records[0].release == release:
            switch = records[0].stage("switch")
            if switch is not None and switch.outcome == "passed":
                return proc, records[0]
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"the deploy never reached its switch:\n{proc.communicate()[0][-3000:]}")


def test_sigterm_after_the_switch_rolls_back(host: DeployHost) -> None:
    live, release = host.answer()
    proc, running = start_deploy_held_in_verify(host, "r-sigterm")
    assert host.answer() == (other_colour(live), "r-sigterm")  # switched, being verified

    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    print(output[-4000:])

    assert proc.returncode != 0
    record = RecordStore(host.stack.config.state_dir).load(running.id)
    assert record.result == "rolled_back"
    assert "interrupted" in (record.error or "")
    assert record.rollback_s is not None
    assert host.answer() == (live, release)
    assert DeployLock(host.stack.config.lock_file).running() is None


def test_sigkill_after_the_switch_is_repaired_by_the_next_run(host: DeployHost) -> None:
    live, _ = host.answer()
    proc, killed = start_deploy_held_in_verify(host, "r-sigkill")
    proc.kill()
    proc.communicate(timeout=60)
    assert host.answer() == (other_colour(live), "r-sigkill")  # never verified, still served
    assert DeployLock(host.stack.config.lock_file).running() is None  # the kernel freed it

    result = host.deploy("r-after-kill")

    assert result.returncode == 0
    assert f"deploy {killed.id} (pid {killed.pid}) was killed; repairing" in result.stdout
    assert RecordStore(host.stack.config.state_dir).load(killed.id).result == "interrupted"
    record = host.last()
    assert (record.result, record.from_colour) == ("deployed", live)  # repaired back first
    assert host.answer() == (other_colour(live), "r-after-kill")


def test_old_release_images_go_after_each_deploy(host: DeployHost) -> None:
    """Each colour image keeps its newest keep_releases tags; live, previous and used stay."""
    config = host.stack.config
    releases = {r.release for r in RecordStore(config.state_dir).history(limit=100)}
    state = load_state(config.state_file)
    in_use = subprocess.run(
        ["docker", "ps", "-a", "--filter", "label=com.docker.compose.project=bgdeploy",
         "--format", "{{.Image}}"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    for repo in ("bgdeploy-backend", "bgdeploy-frontend"):
        tags = [tag for tag, _ in host.stack.engine.image_tags(repo)]
        assert len(releases) > config.engine.keep_releases + 2  # enough deploys to have pruned some
        assert len(tags) < len(releases), tags
        for tag in tags[config.engine.keep_releases :]:
            assert tag in state.releases.values() or f"{repo}:{tag}" in in_use, tag
        for release in state.releases.values():
            assert release in tags
