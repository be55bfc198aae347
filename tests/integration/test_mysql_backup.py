"""The MySQL/MariaDB backup and the commands kind against a real MariaDB container.

The server is the shop example's database image (``examples/shop-mariadb/db``), run alone with
``docker run`` (no published port: everything goes through ``docker exec``) as container and
volume ``bgmysqltest-<random>``, with a schema made by the mariadb client.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytest_bluegreen.adapters.databases.commands import CommandBackup
from pytest_bluegreen.adapters.databases.dump_files import (
    checksum_file,
    file_sha256,
    verify_checksum,
)
from pytest_bluegreen.adapters.databases.mysql import MySQLBackup
from pytest_bluegreen.core.errors import BackupError
from pytest_bluegreen.core.ports import BackupResult
from tests.harness import REPO, progress
from tests.images import ThrowawayImages

pytestmark = pytest.mark.integration

T = TypeVar("T")
CONTEXT = REPO / "examples" / "shop-mariadb" / "db"
IMAGE_REPOSITORY = "bgmysqltest-db"
ORDERS = 200_000
ODD_TABLE = "Odd \"Table\" `x` 'y'"  # a name that needs every kind of quoting
ODD = "`" + ODD_TABLE.replace("`", "``") + "`"
SCHEMA = f"""
CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL);
INSERT INTO customers (name) SELECT CONCAT('customer ', seq) FROM seq_1_to_50;
CREATE TABLE orders (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  customer_id INT NOT NULL,
  note VARCHAR(100),
  payload VARBINARY(64),
  FOREIGN KEY (customer_id) REFERENCES customers (id)
);
INSERT INTO orders (customer_id, note, payload)
  SELECT 1 + seq % 50, CONCAT(MD5(seq), MD5(seq * 7)), UNHEX(SHA2(seq, 256))
  FROM seq_1_to_{ORDERS};
CREATE TABLE {ODD} (x INT);
INSERT INTO {ODD} VALUES (1), (2), (3);
CREATE TABLE empty_table (x INT);
CREATE TABLE events (id BIGINT AUTO_INCREMENT PRIMARY KEY,
                     at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6));
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT);
CREATE TRIGGER orders_audit AFTER INSERT ON orders
  FOR EACH ROW INSERT INTO audit (order_id) VALUES (NEW.id);
CREATE PROCEDURE order_count() SELECT COUNT(*) FROM orders;
CREATE VIEW big_orders AS SELECT id FROM orders WHERE id > 10;
CREATE DATABASE tiny;
CREATE TABLE tiny.t (x INT);
INSERT INTO tiny.t VALUES (1);
"""
# Every table and only tables (not the view); "events" gets rows from the writer test.
STATIC_COUNTS = {"customers": 50, "orders": ORDERS, ODD_TABLE: 3, "empty_table": 0, "audit": 0}


@dataclass(frozen=True, slots=True)
class MariaDB:
    container: str
    root_password: str

    def sql(self, statements: str, database: str = "shop") -> str:
        """Run SQL as root (the password from the container's environment)."""
        script = 'MYSQL_PWD=$MARIADB_ROOT_PASSWORD exec mariadb -uroot -N -B -- "$1"'
        argv = ["docker", "exec", "-i", self.container, "sh", "-c", script, "sh", database]
        result = subprocess.run(argv, input=statements, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def databases(self) -> set[str]:
        return set(self.sql("SHOW DATABASES;").splitlines())

    def backup(
        self, folder: Path, keep: int = 10, database: str = "shop", **options: Any
    ) -> MySQLBackup:
        return MySQLBackup(self.container, database, "", folder, keep, **options)


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"docker {args[0]}: {result.stderr}"
    return result.stdout.strip()


def eventually(probe: Callable[[], T], expected: T, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while (value := probe()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert value == expected


def wait_until(check: Callable[[], bool], message: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


@pytest.fixture(scope="module")
def image(throwaway_images: ThrowawayImages) -> str:
    """The shop example's MariaDB image, built for this session."""
    if not (CONTEXT / "Dockerfile").is_file():
        pytest.skip(f"no {CONTEXT.relative_to(REPO)}/Dockerfile to build the MariaDB from")
    throwaway_images.add_repository(IMAGE_REPOSITORY)
    tag = f"{IMAGE_REPOSITORY}:test"
    # BASE_IMAGE from the environment when set (no registry here), else the Dockerfile's default.
    docker("build", "-q", "--build-arg", "BASE_IMAGE", "-t", tag, str(CONTEXT), timeout=900)
    return tag


@pytest.fixture(scope="module")
def mariadb(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A MariaDB container of its own, healthy, with the test schema; removed with its volume."""
    name = f"bgmysqltest-{secrets.token_hex(4)}"
    home = tmp_path_factory.mktemp("bgmysqltest")
    root_password = secrets.token_urlsafe(16)
    env_file = home / "db.env"  # the passwords stay off the docker run command line too
    env_file.write_text(
        "MARIADB_DATABASE=shop\nMARIADB_USER=shop\n"
        f"MARIADB_PASSWORD={secrets.token_urlsafe(16)}\nMARIADB_ROOT_PASSWORD={root_password}\n"
    )
    env_file.chmod(0o600)
    try:
        docker("volume", "create", name)
        volume = f"{name}:/var/lib/mysql"
        docker("run", "-d", "--name", name, "-v", volume, "--env-file", str(env_file), image)
        # The image's own health check (the app user over TCP): false during initialisation.
        health = ["docker", "exec", name, "db-healthcheck"]
        wait_until(
            lambda: subprocess.run(health, capture_output=True).returncode == 0,
            "MariaDB never became ready",
            120,
        )
        server = MariaDB(name, root_password)
        started = time.monotonic()
        server.sql(SCHEMA)
        progress(f"MariaDB schema with {ORDERS} orders in {time.monotonic() - started:.1f}s")
        yield server
    finally:
        docker("rm", "-f", "-v", name, check=False)
        docker("volume", "rm", "-f", name, check=False)


@pytest.fixture(scope="module")
def first(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> BackupResult:
    folder = tmp_path_factory.mktemp("first") / "backups"
    started = time.monotonic()
    result = mariadb.backup(folder).backup("first")
    progress(
        f"MariaDB backup of {sum(result.row_counts.values())} rows, {result.size_bytes} bytes "
        f"gzip'd: dump {result.dump_s:.2f}s, verify {result.verify_s:.2f}s, "
        f"all {time.monotonic() - started:.2f}s"
    )
    return result


# argv[0] of every process a backup command started (BG_BACKUP=bg_backup_... in its env).
PROCESSES = r"""
for p in /proc/[0-9]*; do
  while IFS= read -r -d '' var; do
    if [[ $var == BG_BACKUP=bg_backup_* ]]; then
      IFS= read -r -d '' name <"$p/cmdline" && echo "$name"
      break
    fi
  done 2>/dev/null <"$p/environ" || true
done
"""


def leftovers(mariadb: MariaDB) -> tuple[set[str], list[str], list[str]]:
    """Scratch databases, other sessions and processes of backup commands still there."""
    scratch = {name for name in mariadb.databases() if name.endswith("_bgverify")}
    sessions = mariadb.sql(
        "SELECT COMMAND FROM information_schema.PROCESSLIST "
        "WHERE ID <> CONNECTION_ID() AND USER <> 'system user' AND COMMAND <> 'Daemon';"
    ).split()
    argv = ["docker", "exec", mariadb.container, "bash", "-c", PROCESSES]
    processes = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
    return scratch, sessions, processes


NOTHING_LEFT: tuple[set[str], list[str], list[str]] = (set(), [], [])


def test_backup_is_gzipd_sql_with_its_checksum(first: BackupResult) -> None:
    assert first.path.name == "first.sql.gz"
    head = subprocess.run(
        ["sh", "-c", 'gzip -dc "$1" | head -c 200', "sh", str(first.path)],
        capture_output=True,
        check=True,
    ).stdout
    assert b"\n-- MariaDB dump" in head  # after 10.11.8's sandbox-mode line
    tail = subprocess.run(["sh", "-c", 'gzip -dc "$1" | tail -n 1', "sh", str(first.path)],
                          capture_output=True, check=True).stdout  # fmt: skip
    assert tail.startswith(b"-- Dump completed")
    assert first.size_bytes == first.path.stat().st_size
    assert first.sha256 == file_sha256(first.path)
    assert checksum_file(first.path).read_text() == f"{first.sha256}  first.sql.gz\n"
    assert verify_checksum(first.path)
    assert sorted(p.name for p in first.path.parent.iterdir()) == [
        "first.sql.gz",
        "first.sql.gz.sha256",
    ]


def test_counts_are_every_table_and_nothing_is_left(mariadb: MariaDB, first: BackupResult) -> None:
    assert first.row_counts == {**STATIC_COUNTS, "events": first.row_counts["events"]}
    assert "big_orders" not in first.row_counts, "a view is not a table"
    assert leftovers(mariadb) == NOTHING_LEFT


def test_restore_into_a_new_database_is_the_same_data(
    mariadb: MariaDB, first: BackupResult, tmp_path: Path
) -> None:
    backup = mariadb.backup(tmp_path)
    try:
        backup.restore(first.path, "restored_copy")
        assert backup.row_counts("restored_copy") == first.row_counts
        same = "CHECKSUM TABLE orders, customers;"
        assert mariadb.sql(same, "restored_copy").replace("restored_copy.", "") == mariadb.sql(
            same
        ).replace("shop.", ""), "binary payloads and all"
        triggers = "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = "
        assert mariadb.sql(f"{triggers}'restored_copy';") == "orders_audit"
        assert mariadb.sql("CALL order_count();", "restored_copy") == str(ORDERS)
        assert mariadb.sql("SELECT COUNT(*) FROM big_orders;", "restored_copy") == str(ORDERS - 10)
        with pytest.raises(BackupError, match="'restored_copy' already exists"):
            backup.restore(first.path, "restored_copy")
        mariadb.sql("DELETE FROM audit; DELETE FROM events;", "restored_copy")
        backup.restore(first.path, "restored_copy", replace=True)
        assert backup.row_counts("restored_copy") == first.row_counts
        rows = backup.query("restored_copy", "SELECT id, note FROM orders ORDER BY id LIMIT 2;")
        assert rows == [("1", mariadb.sql("SELECT CONCAT(MD5(1), MD5(7));")), ("2", rows[1][1])]
    finally:
        backup.drop_database("restored_copy")
    assert "restored_copy" not in mariadb.databases()


def test_a_corrupted_dump_is_refused(mariadb: MariaDB, first: BackupResult, tmp_path: Path) -> None:
    copy = tmp_path / first.path.name
    shutil.copy(first.path, copy)
    shutil.copy(checksum_file(first.path), checksum_file(copy))
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="does not match its checksum"):
        mariadb.backup(tmp_path).restore(copy, "corrupted_copy")
    assert "corrupted_copy" not in mariadb.databases()


def test_rotation_keeps_the_newest_two_of_three(mariadb: MariaDB, tmp_path: Path) -> None:
    backup = mariadb.backup(tmp_path, keep=2, database="tiny")
    for name in ("r1", "r2", "r3"):
        assert backup.backup(name).row_counts == {"t": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "r2.sql.gz",
        "r2.sql.gz.sha256",
        "r3.sql.gz",
        "r3.sql.gz.sha256",
    ]


def test_no_password_on_any_host_command_line(
    mariadb: MariaDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    popen = subprocess.Popen

    def recording(args: Any, *more: Any, **options: Any) -> Any:
        seen.append(" ".join(map(str, args)))
        return popen(args, *more, **options)

    monkeypatch.setattr(subprocess, "Popen", recording)
    made = mariadb.backup(tmp_path, database="tiny").backup("b")
    monkeypatch.undo()
    assert made.row_counts == {"t": 1}
    assert len(seen) >= 4, "dump, restore, counts, drops"
    assert not [argv for argv in seen if mariadb.root_password in argv]


# Inserts into events, one row a statement (each commits), until its connection is killed.
WRITER = """
DELIMITER //
BEGIN NOT ATOMIC
  DECLARE stop_at DATETIME(6) DEFAULT SYSDATE(6) + INTERVAL 60 SECOND;
  WHILE SYSDATE(6) < stop_at DO
    INSERT INTO events () VALUES ();
    DO SLEEP(0.002);
  END WHILE;
END //
"""


def start_as_app_user(mariadb: MariaDB, sql: str) -> subprocess.Popen[str]:
    """A session of the application's user (not root) in the background."""
    script = 'MYSQL_PWD=$MARIADB_PASSWORD exec mariadb -u"$MARIADB_USER" "$MARIADB_DATABASE"'
    argv = ["docker", "exec", "-i", mariadb.container, "sh", "-c", script]
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert process.stdin is not None
    process.stdin.write(sql)
    process.stdin.close()
    return process


def stop_app_sessions(mariadb: MariaDB, process: subprocess.Popen[str]) -> None:
    ids = mariadb.sql("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'shop';")
    for session in ids.split():
        mariadb.sql(f"KILL CONNECTION {session};")
    process.wait(timeout=30)
    if process.stderr is not None:
        process.stderr.close()


def events(mariadb: MariaDB) -> int:
    return int(mariadb.sql("SELECT COUNT(*) FROM events;"))


def test_a_backup_verifies_while_another_session_keeps_writing(
    mariadb: MariaDB, first: BackupResult, tmp_path: Path
) -> None:
    before = events(mariadb)
    writer = start_as_app_user(mariadb, WRITER)
    try:
        wait_until(lambda: events(mariadb) > before, "the writer never wrote")
        started = events(mariadb)
        result = mariadb.backup(tmp_path).backup("during-writes")
        assert writer.poll() is None, "the writer ran for the whole backup"
        wait_until(lambda: events(mariadb) > result.row_counts["events"], "the writer stopped")
    finally:
        stop_app_sessions(mariadb, writer)
    # Rows were committed before the snapshot and after it, yet the dump verified.
    assert started < result.row_counts["events"]
    assert {t: n for t, n in result.row_counts.items() if t != "events"} == STATIC_COUNTS
    progress(
        f"backup under writes: {result.row_counts['events'] - started} rows written between "
        f"the writer's start and the snapshot; dump {result.dump_s:.2f}s, "
        f"verify {result.verify_s:.2f}s"
    )
    eventually(lambda: leftovers(mariadb), NOTHING_LEFT)


def test_a_table_lock_makes_the_backup_fail_fast_and_leaves_nothing(
    mariadb: MariaDB, tmp_path: Path
) -> None:
    locker = start_as_app_user(mariadb, "LOCK TABLES orders WRITE; SELECT SLEEP(60);")
    try:
        locked = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'User sleep';"
        eventually(lambda: mariadb.sql(locked), "1")
        started = time.monotonic()
        with pytest.raises(
            BackupError, match="could not take the brief global read lock within 2s"
        ):
            mariadb.backup(tmp_path, lock_wait_s=2).backup("blocked")
        assert time.monotonic() - started < 15
        assert list(tmp_path.iterdir()) == []
    finally:
        stop_app_sessions(mariadb, locker)
    eventually(lambda: leftovers(mariadb), NOTHING_LEFT)
    mariadb.sql("INSERT INTO empty_table VALUES (1); DELETE FROM empty_table;")  # writes work


# --- the commands kind, with mariadb-dump and mariadb as the team's commands -------------------

DUMP_TINY = [
    "sh",
    "-c",
    "MYSQL_PWD=$MARIADB_ROOT_PASSWORD exec mariadb-dump -uroot --single-transaction tiny",
]
RESTORE = [
    "sh",
    "-c",
    'export MYSQL_PWD=$MARIADB_ROOT_PASSWORD; mariadb -uroot -e "DROP DATABASE IF EXISTS '
    '\\`$1\\`; CREATE DATABASE \\`$1\\`" && exec mariadb -uroot "$1"',
    "sh",
    "{database}",
]


def commands(mariadb: MariaDB, folder: Path, restore: list[str] = RESTORE) -> CommandBackup:
    return CommandBackup(
        mariadb.container, "tiny", "", folder, backup_command=DUMP_TINY, restore_command=restore
    )


def test_commands_kind_backs_up_and_verifies_by_its_restore_command(
    mariadb: MariaDB, tmp_path: Path
) -> None:
    backup = commands(mariadb, tmp_path, RESTORE)
    made = backup.backup("c1")
    try:
        assert b"\n-- MariaDB dump" in made.path.read_bytes()[:200], "as the command wrote it"
        assert verify_checksum(made.path)
        assert made.verified_by_restore
        assert made.row_counts == {}
        assert "tiny_bgverify" in made.verification
        counter = mariadb.backup(tmp_path, database="tiny")
        assert counter.row_counts("tiny_bgverify") == {"t": 1}, "restored for real"
        backup.restore(made.path, "tiny_copy")
        assert counter.row_counts("tiny_copy") == {"t": 1}
    finally:
        for name in ("tiny_bgverify", "tiny_copy"):
            mariadb.sql(f"DROP DATABASE IF EXISTS {name};")


def test_commands_kind_without_restore_says_it_is_unverified(
    mariadb: MariaDB, tmp_path: Path
) -> None:
    made = commands(mariadb, tmp_path, []).backup("c2")
    assert not made.verified_by_restore
    assert made.verification.startswith("NOT verified by a restore")
    assert "tiny_bgverify" not in mariadb.databases()


def test_commands_kind_a_failing_restore_discards_the_backup(
    mariadb: MariaDB, tmp_path: Path
) -> None:
    into_nowhere = ["sh", "-c", 'MYSQL_PWD=$MARIADB_ROOT_PASSWORD exec mariadb -uroot "$1"']
    with pytest.raises(BackupError, match=r"(?s)restore_command into database 'tiny_bgverify'"):
        commands(mariadb, tmp_path, [*into_nowhere, "sh", "{database}"]).backup("c3")
    assert list(tmp_path.iterdir()) == []


def test_drop_database_ends_the_sessions_in_it(mariadb: MariaDB, tmp_path: Path) -> None:
    backup = mariadb.backup(tmp_path, database="tiny")
    made = backup.backup("held")
    backup.restore(made.path, "held_copy")
    # An open transaction that read a table holds its metadata lock: DROP would wait for it.
    sql = "START TRANSACTION; SELECT COUNT(*) FROM t; SELECT SLEEP(60);"
    script = f'MYSQL_PWD=$MARIADB_ROOT_PASSWORD exec mariadb -uroot held_copy -e "{sql}"'
    argv = ["docker", "exec", mariadb.container, "sh", "-c", script]
    holder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sleeping = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'User sleep';"
        eventually(lambda: mariadb.sql(sleeping), "1")
        started = time.monotonic()
        backup.drop_database("held_copy")
        assert time.monotonic() - started < 10
        assert "held_copy" not in mariadb.databases()
    finally:
        holder.kill()
        holder.wait()
