from __future__ import annotations

import gzip
import os
import stat
import subprocess
import zlib
from pathlib import Path

import pytest

from pytest_bluegreen.adapters.databases.dump_files import checksum_file, verify_checksum
from pytest_bluegreen.adapters.databases.mysql import (
    CLIENT_SCRIPT,
    COUNT_SQL,
    PREPARE_COUNT_SQL,
    MySQLBackup,
    Tools,
    dump_command,
    gunzip_chunks,
    parse_batch,
    parse_tools,
    quote_identifier,
    scratch_name,
    unescape_field,
)
from pytest_bluegreen.core.errors import BackupError
from tests.unit.local_docker import install, program

PASSWORD = "s3cret-Root-pw"
USER_PASSWORD = "app-pw-42"

# --- small parts ------------------------------------------------------------------------------


def test_tools_prefer_what_was_found_and_see_mysqls_gtid_option() -> None:
    output = "client=/usr/bin/mariadb\ndumper=/usr/bin/mariadb-dump\n"
    assert parse_tools(output) == Tools("/usr/bin/mariadb", "/usr/bin/mariadb-dump", False)
    mysql = parse_tools("client=/usr/bin/mysql\ndumper=/usr/bin/mysqldump\ngtid=yes\n")
    assert mysql.gtid_option
    assert mysql.dumper_name == "mysqldump"


@pytest.mark.parametrize(
    ("output", "missing"),
    [
        ("client=\ndumper=/usr/bin/mysqldump\n", "no mariadb or mysql;"),
        ("client=/usr/bin/mysql\ndumper=\n", "no mariadb-dump or mysqldump;"),
        ("", "no mariadb or mysql and mariadb-dump or mysqldump;"),
    ],
)
def test_missing_client_programs_are_a_clear_error(output: str, missing: str) -> None:
    with pytest.raises(BackupError, match=missing):
        parse_tools(output)


def test_dump_command_is_one_consistent_database_with_routines_and_triggers() -> None:
    mariadb = Tools("/usr/bin/mariadb", "/usr/bin/mariadb-dump", False)
    command = dump_command(mariadb, "root", "-shop")
    assert command[0] == "/usr/bin/mariadb-dump"
    for option in ("--single-transaction", "--routines", "--triggers", "--verbose", "--hex-blob"):
        assert option in command
    assert command[-4:] == ["-u", "root", "--", "-shop"], "a name is never read as an option"
    assert "--set-gtid-purged=OFF" not in command, "MariaDB's dump does not know it"
    mysql = Tools("/usr/bin/mysql", "/usr/bin/mysqldump", True)
    assert "--set-gtid-purged=OFF" in dump_command(mysql, "root", "shop")


def test_identifiers_are_backtick_quoted() -> None:
    assert quote_identifier("shop") == "`shop`"
    assert quote_identifier("a`b; DROP") == "`a``b; DROP`"
    for bad in ("", "a\0b"):
        with pytest.raises(BackupError, match="not a usable database name"):
            quote_identifier(bad)


def test_scratch_name_keeps_within_64_characters() -> None:
    assert scratch_name("shop") == "shop_bgverify"
    long = scratch_name("x" * 64)
    assert len(long) == 64
    assert long.endswith("_bgverify")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("plain", "plain"),
        ("a\\tb", "a\tb"),
        ("line\\nbreak", "line\nbreak"),
        ("back\\\\slash", "back\\slash"),
        ("nul\\0", "nul\0"),
        ("\\\\n", "\\n"),
        ("NULL", "NULL"),
    ],
)
def test_batch_fields_are_unescaped(field: str, value: str) -> None:
    assert unescape_field(field) == value


def test_batch_output_is_rows_of_tab_separated_fields() -> None:
    output = "1\ta\\tb\tNULL\n2\tx\\ny\t\n"
    assert parse_batch(output) == [("1", "a\tb", "NULL"), ("2", "x\ny", "")]


def test_the_count_query_is_one_prefixed_json_line_and_needs_no_quoting_mode() -> None:
    assert "BG-ROWCOUNTS " in PREPARE_COUNT_SQL
    assert "'SELECT ''BG-ROWCOUNTS {}'''" in PREPARE_COUNT_SQL, "an empty database counts {}"
    assert "\\" not in PREPARE_COUNT_SQL, "NO_BACKSLASH_ESCAPES must not change it"
    assert '"' not in PREPARE_COUNT_SQL, "ANSI_QUOTES must not change it"
    assert COUNT_SQL.startswith(PREPARE_COUNT_SQL)
    assert COUNT_SQL.endswith("EXECUTE bg_count; DEALLOCATE PREPARE bg_count;")


def test_gunzip_chunks_reads_whole_dumps_and_refuses_broken_ones(tmp_path: Path) -> None:
    sql = b"INSERT INTO t VALUES (1);\n" * 100_000
    dump = tmp_path / "a.sql.gz"
    dump.write_bytes(gzip.compress(sql))
    assert b"".join(gunzip_chunks(dump)) == sql
    truncated = tmp_path / "t.sql.gz"
    truncated.write_bytes(dump.read_bytes()[:-100])
    with pytest.raises(BackupError, match="truncated"):
        b"".join(gunzip_chunks(truncated))
    plain = tmp_path / "p.sql.gz"
    plain.write_bytes(sql)
    with pytest.raises(BackupError, match="not a readable gzip'd dump"):
        b"".join(gunzip_chunks(plain))


# --- the credentials, run by a real sh --------------------------------------------------------


def credentials(user: str, **environment: str) -> str:
    """MYSQL_PWD as CLIENT_SCRIPT sets it for ``user`` from ``environment``."""
    env = {"PATH": os.environ["PATH"], **environment}
    command = ["sh", "-c", CLIENT_SCRIPT, "bg-mysql", user, "sh", "-c", 'echo "${MYSQL_PWD-}"']
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("variable", ["MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"])
def test_root_gets_the_containers_root_password(variable: str) -> None:
    assert credentials("root", **{variable: PASSWORD}) == f"{PASSWORD}\n"


def test_the_mariadb_variable_wins_and_files_are_read(tmp_path: Path) -> None:
    both = {"MARIADB_ROOT_PASSWORD": "first", "MYSQL_ROOT_PASSWORD": "second"}
    assert credentials("root", **both) == "first\n"
    secret = tmp_path / "root-password"
    secret.write_text(f"{PASSWORD}\n")
    assert credentials("root", MARIADB_ROOT_PASSWORD_FILE=str(secret)) == f"{PASSWORD}\n"


def test_the_images_own_user_gets_its_password_and_others_none() -> None:
    env = {"MARIADB_USER": "shop", "MARIADB_PASSWORD": USER_PASSWORD, "MARIADB_ROOT_PASSWORD": "x"}
    assert credentials("shop", **env) == f"{USER_PASSWORD}\n"
    assert credentials("someone", **env) == "\n"
    assert credentials("root") == "\n", "no password: the client tries the socket"


# --- a whole backup, with fake client programs run by a local "docker exec" -------------------

# The client: answers the dump script's markers, logs every statement with its database (and
# the password it was given), prints counts for EXECUTE bg_count, fails where told to.
FAKE_CLIENT = r"""#!/bin/bash
db=none
args=("$@")
for i in "${!args[@]}"; do [[ ${args[i]} != -- ]] || db=${args[i+1]}; done
printf '%s\n' "${MYSQL_PWD-unset}" >>"$BG_FAKE_DIR/passwords"
while IFS= read -r line || [[ -n $line ]]; do
  printf '%s: %s\n' "$db" "$line" >>"$BG_FAKE_DIR/events"
  case $line in
    "SELECT '--bg-backup-end--';") echo '--bg-backup-end--' ;;
    "FLUSH TABLES WITH READ LOCK;")
      if [[ -n ${FAKE_LOCK_FAIL:-} ]]; then
        echo "ERROR 1205 (HY000) at line 5: Lock wait timeout exceeded; try restarting" >&2
        exit 1
      fi ;;
    *"EXECUTE bg_count"*)
      if [[ $db == *_bgverify ]]; then counts=${FAKE_RESTORED:-$FAKE_COUNTS}
      else counts=$FAKE_COUNTS; fi
      echo "BG-ROWCOUNTS $counts" ;;
    *information_schema.SCHEMATA*) echo "${FAKE_EXISTS:-0}" ;;
  esac
done
if [[ -n ${FAKE_RESTORE_FAIL:-} && $db == *_bgverify ]]; then
  echo "ERROR 1064 (42000) at line 3: You have an error in your SQL syntax" >&2
  exit 1
fi
"""

FAKE_DUMPER = r"""#!/bin/bash
if [[ $1 == --help ]]; then echo "  --single-transaction"; exit 0; fi
printf '%s\n' "$*" >>"$BG_FAKE_DIR/dumper.args"
echo "-- Connecting to localhost..." >&2
if [[ -n ${FAKE_DUMP_FAIL:-} ]]; then
  echo "mariadb-dump: Got error: 1045: Access denied for user 'root'@'localhost'" >&2
  exit 2
fi
echo "-- Starting transaction..." >&2
echo "dumper: in its transaction" >>"$BG_FAKE_DIR/events"
echo "-- Setting savepoint..." >&2
printf '%s\n' "-- MariaDB dump 10.19" "CREATE TABLE t (x int);" "INSERT INTO t VALUES (1),(2),(3);"
echo "mariadb-dump: a warning worth showing" >&2
if [[ -z ${FAKE_TRUNCATED:-} ]]; then echo "-- Dump completed on 2026-12-02 10:00:00"; fi
exit 0
"""

SQL = b"-- MariaDB dump 10.19\nCREATE TABLE t (x int);\nINSERT INTO t VALUES (1),(2),(3);\n"


class Fake:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir = root / "fake"
        self.docker, self.argv_log = install(self.dir)
        program(self.dir / "bin", "mariadb", FAKE_CLIENT)
        program(self.dir / "bin", "mariadb-dump", FAKE_DUMPER)
        monkeypatch.setenv("PATH", f"{self.dir / 'bin'}:{os.environ['PATH']}")
        monkeypatch.setenv("BG_FAKE_DIR", str(self.dir))
        monkeypatch.setenv("MARIADB_ROOT_PASSWORD", PASSWORD)  # the "container's" environment
        monkeypatch.setenv("FAKE_COUNTS", '{"t": 3}')
        self.backups = root / "backups"

    def backup(self, keep: int = 10, **kwargs: float) -> MySQLBackup:
        return MySQLBackup("cid", "shop", "", self.backups, keep, [self.docker], **kwargs)

    def events(self) -> list[str]:
        path = self.dir / "events"
        return path.read_text().splitlines() if path.exists() else []

    def argv(self) -> str:
        return self.argv_log.read_text() if self.argv_log.exists() else ""

    def nothing_left(self) -> None:
        assert not self.backups.exists() or list(self.backups.iterdir()) == []


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    return Fake(tmp_path, monkeypatch)


def test_a_verified_backup_is_gzipd_sql_published_private_and_rotated(fake: Fake) -> None:
    backup = fake.backup(keep=1)
    first = backup.backup("first")
    assert first.path == fake.backups / "first.sql.gz"
    assert gzip.decompress(first.path.read_bytes()).startswith(SQL)
    assert first.row_counts == {"t": 3}
    assert first.size_bytes == first.path.stat().st_size
    assert verify_checksum(first.path)
    assert checksum_file(first.path).read_text() == f"{first.sha256}  first.sql.gz\n"
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(fake.backups.stat().st_mode) == 0o700
    os.utime(first.path, (1_000_000, 1_000_000))
    backup.backup("second")
    assert sorted(p.name for p in fake.backups.iterdir()) == [
        "second.sql.gz",
        "second.sql.gz.sha256",
    ]
    assert fake.argv().count("client=$(command -v") == 1, "the programs are looked up once"


def test_the_lock_is_held_only_until_the_dump_is_in_its_transaction(fake: Fake) -> None:
    fake.backup().backup("b")
    events = [e for e in fake.events() if not e.startswith("shop: SELECT '--bg-backup-end--'")]
    order = [
        "shop: FLUSH TABLES WITH READ LOCK;",
        "shop: START TRANSACTION WITH CONSISTENT SNAPSHOT;",
        "dumper: in its transaction",
        "shop: UNLOCK TABLES;",
        "shop: EXECUTE bg_count;",
        "shop: COMMIT;",
    ]
    positions = [events.index(event) for event in order]
    assert positions == sorted(positions), events


def test_the_dump_is_restored_into_the_scratch_database_and_dropped(fake: Fake) -> None:
    fake.backup().backup("b")
    scratch = [e.partition(": ")[2] for e in fake.events() if e.startswith("shop_bgverify: ")]
    assert "INSERT INTO t VALUES (1),(2),(3);" in scratch, "the SQL reached the scratch copy"
    statements = "\n".join(fake.events())
    assert "CREATE DATABASE `shop_bgverify`;" in statements
    assert statements.count("DROP DATABASE IF EXISTS `shop_bgverify`;") == 2, "before and after"


def test_no_password_on_any_command_line_yet_every_client_had_it(fake: Fake) -> None:
    fake.backup().backup("b")
    argv = fake.argv()
    assert PASSWORD not in argv
    assert "-e MYSQL_PWD" not in argv
    assert "--password" not in argv
    assert " -p" not in argv
    assert set((fake.dir / "passwords").read_text().split()) == {PASSWORD}
    assert "--single-transaction --routines --triggers" in (fake.dir / "dumper.args").read_text()


def test_every_command_is_bounded_in_the_container_and_marked(fake: Fake) -> None:
    fake.backup(timeout_s=42).backup("b")
    lines = fake.argv().splitlines()
    assert lines
    for line in lines:
        assert " -e BG_BACKUP=bg_backup_" in line
    looked_up, *commands = lines
    assert " cid timeout 30 sh -c " in looked_up, "looking for the programs is short"
    for line in commands:
        assert " cid timeout 42 " in line


def test_counts_that_differ_after_restore_fail_and_drop_the_scratch(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_RESTORED", '{"t": 2, "u": 0}')
    with pytest.raises(BackupError, match=r"t: 3 != 2; u: missing != 0"):
        fake.backup().backup("b")
    fake.nothing_left()
    assert fake.events()[-1] == "none: DROP DATABASE IF EXISTS `shop_bgverify`;"


def test_a_restore_that_fails_in_verification_leaves_nothing(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_RESTORE_FAIL", "1")
    with pytest.raises(BackupError, match=r"(?s)restoring into database 'shop_bgverify'.*1064"):
        fake.backup().backup("b")
    fake.nothing_left()
    assert "DROP DATABASE IF EXISTS `shop_bgverify`" in fake.events()[-1]


def test_a_lock_that_cannot_be_had_is_one_clear_line(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LOCK_FAIL", "1")
    with pytest.raises(BackupError, match="could not take the brief global read lock within 3s"):
        fake.backup(lock_wait_s=2.5).backup("b")
    fake.nothing_left()
    assert "dumper: in its transaction" not in fake.events(), "no dump was started"
    assert "lock_wait_timeout = 3;" in "\n".join(fake.events())


def test_a_failed_dump_says_why_and_leaves_nothing(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DUMP_FAIL", "1")
    with pytest.raises(BackupError, match=r"(?s)mariadb-dump of database 'shop' failed.*1045"):
        fake.backup().backup("b")
    fake.nothing_left()
    assert "shop: UNLOCK TABLES;" in fake.events(), "the lock is given back"
    assert "shop: EXECUTE bg_count;" not in fake.events()


def test_a_dump_without_its_last_line_is_not_whole(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TRUNCATED", "1")
    with pytest.raises(BackupError, match="without its '-- Dump completed' line"):
        fake.backup().backup("b")
    fake.nothing_left()


def test_the_dumps_warnings_reach_the_error_not_its_progress(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_RESTORED", '{"t": 1}')
    with pytest.raises(BackupError) as failure:
        fake.backup().backup("b")
    assert "-- Starting transaction" not in str(failure.value)


def test_missing_programs_in_the_container_are_named(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    (fake.dir / "bin" / "mariadb-dump").unlink()
    monkeypatch.setenv("PATH", f"{fake.dir / 'bin'}:/usr/bin:/bin")  # no mysqldump either
    with pytest.raises(BackupError, match="has no mariadb-dump or mysqldump"):
        fake.backup().backup("b")
    fake.nothing_left()


def test_restore_checks_the_checksum_before_touching_the_server(fake: Fake) -> None:
    backup = fake.backup()
    made = backup.backup("b")
    before = len(fake.events())
    made.path.write_bytes(made.path.read_bytes() + b"!")
    with pytest.raises(BackupError, match="does not match its checksum"):
        backup.restore(made.path, "copy")
    assert len(fake.events()) == before


def test_restore_into_an_existing_database_needs_replace(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = fake.backup()
    made = backup.backup("b")
    monkeypatch.setenv("FAKE_EXISTS", "1")
    with pytest.raises(BackupError, match="'copy' already exists"):
        backup.restore(made.path, "copy")
    backup.restore(made.path, "copy", replace=True)
    copy = [e.partition(": ")[2] for e in fake.events() if e.startswith("copy: ")]
    assert "INSERT INTO t VALUES (1),(2),(3);" in copy


def test_query_and_row_counts_read_the_client(fake: Fake) -> None:
    backup = fake.backup()
    assert backup.row_counts("shop") == {"t": 3}
    assert backup.query("shop", "SELECT 1") == []
    assert "shop: SELECT 1" in fake.events()


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_below_one_is_refused(tmp_path: Path, keep: int) -> None:
    with pytest.raises(ValueError, match="keep must be at least 1"):
        MySQLBackup("cid", "shop", "", tmp_path, keep=keep)


def test_an_empty_user_is_root(tmp_path: Path) -> None:
    assert MySQLBackup("cid", "shop", "", tmp_path).user == "root"
    assert MySQLBackup("cid", "shop", "admin", tmp_path).user == "admin"


def test_the_stored_file_is_plain_gzip(fake: Fake) -> None:
    made = fake.backup().backup("b")
    assert made.path.read_bytes()[:2] == b"\x1f\x8b"
    assert zlib.decompress(made.path.read_bytes(), 16 + zlib.MAX_WBITS).endswith(
        b"-- Dump completed on 2026-12-02 10:00:00\n"
    )
