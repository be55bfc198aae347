"""The pre-deploy backup against a real PostgreSQL container: dump, verify, restore, fail well.

Only the db service of a throwaway Compose project runs, with a small schema made by psql.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from pytest_bluegreen.adapters.databases.postgres import (
    BackupResult,
    DatabaseBackup,
    checksum_file,
    file_sha256,
    verify_checksum,
)
from pytest_bluegreen.adapters.engines.compose import ComposeStack
from pytest_bluegreen.core.errors import BackupError
from tests.images import ThrowawayImages
from tests.integration.conftest import make_config, progress

pytestmark = pytest.mark.integration

T = TypeVar("T")
PROJECT = "bgbackup"
ODD = '"Odd ""Table"""'  # a name that needs quoting
SCHEMA = f"""
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO customers (name) SELECT 'customer ' || i FROM generate_series(1, 50) i;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers, note text);
INSERT INTO orders (customer_id, note)
  SELECT 1 + i % 50, md5(i::text) || md5((i * 7)::text) FROM generate_series(1, 20000) i;
CREATE TABLE {ODD} (x int);
INSERT INTO {ODD} VALUES (1), (2), (3);
CREATE TABLE empty_table (x int);
CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE SCHEMA audit;
CREATE TABLE audit.log (x int);
INSERT INTO audit.log VALUES (1);
"""
# Every table of the public schema, and only those; "events" gets rows from the writer test.
STATIC_COUNTS = {"customers": 50, "orders": 20000, 'Odd "Table"': 3, "empty_table": 0}


@dataclass(frozen=True, slots=True)
class Database:
    container_id: str
    name: str
    user: str
    home: Path

    def psql(self, sql: str, database: str | None = None) -> str:
        argv = ["docker", "exec", "-i", self.container_id, "psql", "-X", "-q", "-A", "-t"]
        argv += ["-v", "ON_ERROR_STOP=1", "-U", self.user, "-d", database or self.name]
        result = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def databases(self) -> set[str]:
        return set(self.psql("SELECT datname FROM pg_database;", "postgres").splitlines())

    def backup(self, folder: Path, keep: int = 10, database: str | None = None) -> DatabaseBackup:
        return DatabaseBackup(self.container_id, database or self.name, self.user, folder, keep)


@pytest.fixture(scope="module")
def db(throwaway_images: ThrowawayImages) -> Iterator[Database]:
    """Only the db service of project bgbackup, from no volume, with the test schema.

    Also a database "tiny" whose backups are small and quick.
    """
    throwaway_images.add(PROJECT)
    home = Path(tempfile.mkdtemp(prefix="bgbk-"))
    stack = ComposeStack(make_config(PROJECT, home, ports=False), progress=progress)
    service = stack.config.database.service
    try:
        stack.down(volumes=True)
        stack.prepare()
        stack.compose.build([service])
        stack.start([service])
        (container_id,) = stack.container_ids(service)
        env = stack.config.environment
        database = Database(
            container_id,
            env.get("POSTGRES_DB", "aptos"),
            env.get("POSTGRES_USER", "aptos_user"),
            home,
        )
        database.psql(SCHEMA)
        database.psql("CREATE DATABASE tiny;", "postgres")
        database.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);", "tiny")
        yield database
    finally:
        stack.down(volumes=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def first(db: Database) -> BackupResult:
    result = db.backup(db.home / "backups").backup("first")
    progress(
        f"backup of {result.size_bytes} bytes: dump {result.dump_s:.2f}s, "
        f"verify {result.verify_s:.2f}s"
    )
    return result


def without_events(counts: dict[str, int]) -> dict[str, int]:
    assert "events" in counts
    return {table: rows for table, rows in counts.items() if table != "events"}


# argv[0] of every process run by a backup command (PGAPPNAME=bg_backup_...).
PROCESSES = r"""
for p in /proc/[0-9]*; do
  while IFS= read -r -d '' var; do
    if [[ $var == PGAPPNAME=bg_backup_* ]]; then
      IFS= read -r -d '' name <"$p/cmdline" && echo "$name"
      break
    fi
  done 2>/dev/null <"$p/environ" || true
done
"""


def leftovers(db: Database) -> tuple[set[str], str, list[str]]:
    """Scratch databases, sessions and processes of backup commands still there."""
    scratch = {name for name in db.databases() if name.startswith("bg_verify_")}
    sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'bg\\_backup\\_%';"
    argv = ["docker", "exec", db.container_id, "bash", "-c", PROCESSES]
    processes = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
    return scratch, db.psql(sql, "postgres"), processes


NOTHING_LEFT: tuple[set[str], str, list[str]] = (set(), "0", [])


@pytest.fixture(autouse=True)
def server_never_restarts(db: Database) -> Iterator[None]:
    """Postgres is PID 1 of its container: an orphan killed there looks like a crash to it."""
    yield
    logs = subprocess.run(
        ["docker", "logs", db.container_id], capture_output=True, text=True, check=True
    )
    assert "terminating any other active server processes" not in logs.stdout + logs.stderr


def test_backup_is_a_compressed_custom_dump_with_its_checksum(
    db: Database, first: BackupResult
) -> None:
    assert first.path == db.home / "backups" / "first.dump"
    assert first.path.read_bytes()[:5] == b"PGDMP"
    with first.path.open("rb") as dump:
        toc = subprocess.run(
            ["docker", "exec", "-i", db.container_id, "pg_restore", "-l"],
            stdin=dump,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    assert "Format: CUSTOM" in toc
    assert "Compression: 6" in toc
    assert first.size_bytes == first.path.stat().st_size
    assert first.sha256 == file_sha256(first.path)
    assert checksum_file(first.path).read_text() == f"{first.sha256}  first.dump\n"
    assert verify_checksum(first.path)
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in first.path.parent.iterdir()) == [
        "first.dump",
        "first.dump.sha256",
    ]


def test_counts_cover_every_public_table_and_the_scratch_database_is_gone(
    db: Database, first: BackupResult
) -> None:
    assert first.row_counts == {**STATIC_COUNTS, "events": first.row_counts["events"]}
    assert "log" not in first.row_counts, "only the public schema is counted"
    assert leftovers(db) == NOTHING_LEFT


def test_restore_into_a_new_database_gives_identical_counts(
    db: Database, first: BackupResult
) -> None:
    backup = db.backup(db.home / "backups")
    try:
        backup.restore(first.path, "restored_copy")
        assert backup.row_counts("restored_copy") == first.row_counts
        with pytest.raises(BackupError, match="'restored_copy' already exists"):
            backup.restore(first.path, "restored_copy")
        db.psql("DELETE FROM orders;", "restored_copy")
        backup.restore(first.path, "restored_copy", replace=True)
        assert backup.row_counts("restored_copy") == first.row_counts
    finally:
        backup.drop_database("restored_copy")
    assert "restored_copy" not in db.databases()


def test_a_tampered_dump_is_refused(db: Database, first: BackupResult, tmp_path: Path) -> None:
    copy = tmp_path / first.path.name
    shutil.copy(first.path, copy)
    shutil.copy(checksum_file(first.path), checksum_file(copy))
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="does not match its checksum"):
        db.backup(tmp_path).restore(copy, "tampered_copy")
    assert "tampered_copy" not in db.databases()


def test_rotation_keeps_the_newest_two_of_three(db: Database) -> None:
    folder = db.home / "rotated"
    backup = db.backup(folder, keep=2, database="tiny")  # small and quick
    for name in ("r1", "r2", "r3"):
        assert backup.backup(name).row_counts == {"t": 1}
    assert sorted(p.name for p in folder.iterdir()) == [
        "r2.dump",
        "r2.dump.sha256",
        "r3.dump",
        "r3.dump.sha256",
    ]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: room for a tiny backup, too small for a backup of the test database."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mount.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_fails_cleanly_and_keeps_the_older_backup(
    db: Database, tiny_disk: Path
) -> None:
    older = db.backup(tiny_disk, keep=1, database="tiny").backup("older")
    with pytest.raises(BackupError, match="not enough space") as failure:
        db.backup(tiny_disk, keep=1).backup("big")
    assert "No space left on device" in str(failure.value)
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["older.dump", "older.dump.sha256"]
    assert verify_checksum(older.path)
    eventually(lambda: leftovers(db), NOTHING_LEFT)


def test_a_dump_blocked_by_a_lock_times_out_and_leaves_no_session(
    db: Database, tmp_path: Path
) -> None:
    sql = "BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT;"
    locker = start_psql(db, "bg_test_locker", sql)
    try:
        eventually(lambda: db.psql(LOCKED), "1")
        backup = DatabaseBackup(db.container_id, db.name, db.user, tmp_path, timeout_s=2)
        with pytest.raises(BackupError, match="did not finish within 2s and was stopped"):
            backup.backup("blocked")
        assert list(tmp_path.iterdir()) == []
        # A backend waiting for a lock does not notice its client is gone: only the
        # clean-up ends it, before the locker lets go.
        eventually(lambda: leftovers(db), NOTHING_LEFT)
    finally:
        stop_psql(db, locker, "bg_test_locker")


LOCKED = (
    "SELECT count(*) FROM pg_locks WHERE relation = 'orders'::regclass "
    "AND mode = 'AccessExclusiveLock' AND granted;"
)


def start_psql(db: Database, app: str, sql: str) -> subprocess.Popen[str]:
    """A psql session in the background, named ``app`` so it can be ended."""
    argv = ["docker", "exec", "-e", f"PGAPPNAME={app}", db.container_id, "psql", "-X", "-q"]
    argv += ["-U", db.user, "-d", db.name, "-c", sql]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop_psql(db: Database, process: subprocess.Popen[str], app: str) -> None:
    sql = (
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}';"
    )
    db.psql(sql, "postgres")
    process.communicate(timeout=30)


def eventually(probe: Callable[[], T], expected: T, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while (value := probe()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert value == expected


def wait_until(check: Callable[[], bool], message: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


WRITER = """
DO $$
DECLARE stop_at timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
  LOOP
    INSERT INTO events DEFAULT VALUES;
    COMMIT;
    PERFORM pg_sleep(0.002);
    EXIT WHEN clock_timestamp() > stop_at;
  END LOOP;
END $$;
"""


def events(db: Database) -> int:
    return int(db.psql("SELECT count(*) FROM events;"))


def test_a_backup_verifies_while_another_session_keeps_writing(db: Database) -> None:
    before = events(db)
    writer = start_psql(db, "bg_test_writer", WRITER)
    try:
        wait_until(lambda: events(db) > before, "the writer never wrote")
        started = events(db)
        result = db.backup(db.home / "concurrent").backup("during-writes")
        assert writer.poll() is None, "the writer ran for the whole backup"
        wait_until(lambda: events(db) > result.row_counts["events"], "the writer stopped")
    finally:
        stop_psql(db, writer, "bg_test_writer")
    # Rows were committed before the snapshot and after it, yet the dump verified.
    assert started < result.row_counts["events"]
    assert without_events(result.row_counts) == STATIC_COUNTS
