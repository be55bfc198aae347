from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pytest_bluegreen.adapters.databases.commands import (
    CommandBackup,
    CommandBackupResult,
    restore_argv,
    scratch_name,
)
from pytest_bluegreen.adapters.databases.dump_files import checksum_file, verify_checksum
from pytest_bluegreen.core.errors import BackupError
from tests.unit.local_docker import install

# Run by a local "docker exec": what the team's commands would do in their container.
DUMP = ["sh", "-c", 'printf "dump of %s\\n" "$APP_DB"; printf "progress\\n" >&2']
RESTORE = ["sh", "-c", 'cat >"$BG_FAKE_DIR/restored-$1"', "sh", "{database}"]


class Fake:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir = root / "fake"
        self.docker, self.argv_log = install(self.dir)
        monkeypatch.setenv("BG_FAKE_DIR", str(self.dir))
        monkeypatch.setenv("APP_DB", "shop")
        self.backups = root / "backups"

    def backup(
        self,
        backup_command: list[str] = DUMP,
        restore_command: list[str] = RESTORE,
        keep: int = 10,
        timeout_s: float = 600,
    ) -> CommandBackup:
        return CommandBackup(
            "cid",
            "shop",
            "",
            self.backups,
            keep,
            [self.docker],
            backup_command=backup_command,
            restore_command=restore_command,
            timeout_s=timeout_s,
        )

    def restored(self, database: str) -> bytes:
        return (self.dir / f"restored-{database}").read_bytes()

    def nothing_left(self) -> None:
        assert not self.backups.exists() or list(self.backups.iterdir()) == []


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    return Fake(tmp_path, monkeypatch)


def test_restore_argv_replaces_only_the_database_placeholder() -> None:
    command = ["sh", "-c", 'x=${A:-{b}}; restore "$1" {database}', "sh", "{database}"]
    assert restore_argv(command, "shop_bgverify") == [
        "sh",
        "-c",
        'x=${A:-{b}}; restore "$1" shop_bgverify',
        "sh",
        "shop_bgverify",
    ]


def test_scratch_name() -> None:
    assert scratch_name("shop") == "shop_bgverify"
    assert scratch_name("") == "bgverify"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backup_command": []}, "backup_command must be a non-empty list"),
        ({"backup_command": "pg_dump shop"}, "backup_command must be a non-empty list"),
        ({"restore_command": "psql {database}"}, "restore_command must be a list"),
        ({"restore_command": ["psql", "shop"]}, r"must name the database .* \{database\}"),
        ({"keep": 0}, "keep must be at least 1"),
        ({"timeout_s": 0}, "timeout_s must be positive"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"backup_command": DUMP, **kwargs}
    with pytest.raises(ValueError, match=message):
        CommandBackup("cid", "shop", "", tmp_path, **settings)  # type: ignore[arg-type]


def test_a_backup_is_stored_as_it_came_checksummed_verified_by_restore(fake: Fake) -> None:
    made = fake.backup().backup("first")
    assert isinstance(made, CommandBackupResult)
    assert made.path == fake.backups / "first.dump"
    assert made.path.read_bytes() == b"dump of shop\n"
    assert made.size_bytes == len(b"dump of shop\n")
    assert made.row_counts == {}
    assert verify_checksum(made.path)
    assert checksum_file(made.path).read_text() == f"{made.sha256}  first.dump\n"
    assert stat.S_IMODE(made.path.stat().st_mode) == 0o600
    assert fake.restored("shop_bgverify") == b"dump of shop\n", "restored into the scratch name"
    assert made.verified_by_restore
    assert "restored into 'shop_bgverify'" in made.verification
    assert "rows not compared" in made.verification


def test_without_a_restore_command_the_result_says_it_is_not_verified(fake: Fake) -> None:
    made = fake.backup(restore_command=[]).backup("b")
    assert not made.verified_by_restore
    assert made.verification.startswith("NOT verified by a restore")
    assert verify_checksum(made.path)


def test_rotation_keeps_the_newest(fake: Fake) -> None:
    backup = fake.backup(keep=2)
    for age, name in enumerate(("r1", "r2", "r3")):
        made = backup.backup(name)
        os.utime(made.path, (1_000_000 + age, 1_000_000 + age))
    assert sorted(p.name for p in fake.backups.iterdir()) == [
        "r2.dump",
        "r2.dump.sha256",
        "r3.dump",
        "r3.dump.sha256",
    ]


def test_a_failed_backup_command_says_why_and_leaves_nothing(fake: Fake) -> None:
    failing = ["sh", "-c", "echo partial; echo 'pg_dump: error: connection refused' >&2; exit 3"]
    with pytest.raises(BackupError, match=r"(?s)backup_command 'sh' failed \(exit 3\).*refused"):
        fake.backup(failing).backup("b")
    fake.nothing_left()


def test_an_empty_dump_is_refused(fake: Fake) -> None:
    with pytest.raises(BackupError, match="wrote nothing on stdout"):
        fake.backup(["true"]).backup("b")
    fake.nothing_left()


def test_a_missing_program_is_named(fake: Fake) -> None:
    with pytest.raises(BackupError, match=r"exit 127\): a program it needs is not in"):
        fake.backup(["no-such-dump-program"]).backup("b")
    fake.nothing_left()


def test_a_command_that_runs_too_long_is_stopped(fake: Fake) -> None:
    with pytest.raises(BackupError, match="did not finish within 1s and was stopped"):
        fake.backup(["sleep", "30"], timeout_s=1).backup("b")
    fake.nothing_left()


def test_a_failed_verification_restore_discards_the_backup(fake: Fake) -> None:
    restore = ["sh", "-c", 'echo "ERROR: cannot restore into $1" >&2; exit 1', "sh", "{database}"]
    with pytest.raises(BackupError, match=r"(?s)restore_command into database 'shop_bgverify'"):
        fake.backup(restore_command=restore).backup("b")
    fake.nothing_left()


def test_restore_feeds_a_checked_dump_to_the_named_database(fake: Fake) -> None:
    backup = fake.backup()
    made = backup.backup("b")
    backup.restore(made.path, "shop_rehearsal", replace=True)
    assert fake.restored("shop_rehearsal") == b"dump of shop\n"
    made.path.write_bytes(b"tampered")
    with pytest.raises(BackupError, match="does not match its checksum"):
        backup.restore(made.path, "other")
    assert not (fake.dir / "restored-other").exists()


def test_restore_without_a_restore_command_is_a_clear_error(fake: Fake) -> None:
    backup = fake.backup(restore_command=[])
    made = backup.backup("b")
    with pytest.raises(BackupError, match="no restore_command is set"):
        backup.restore(made.path, "copy")


@pytest.mark.parametrize("action", ["query", "drop_database", "row_counts"])
def test_what_this_kind_cannot_do_is_a_clear_error(tmp_path: Path, action: str) -> None:
    backup = CommandBackup("cid", "shop", "", tmp_path, backup_command=DUMP)
    arguments = ("shop", "SELECT 1") if action == "query" else ("shop",)
    with pytest.raises(BackupError, match=r'the "commands" database kind only runs'):
        getattr(backup, action)(*arguments)


def test_commands_run_in_the_container_bounded_and_marked(fake: Fake) -> None:
    fake.backup(timeout_s=42).backup("b")
    lines = fake.argv_log.read_text().splitlines()
    assert len(lines) == 2, "the backup command, then the restore"
    for line in lines:
        assert line.startswith("exec ")
        assert " -e BG_BACKUP=bg_backup_" in line
        assert " cid timeout 42 sh -c " in line
    assert " -i " in lines[1], "the dump on the restore command's stdin"
