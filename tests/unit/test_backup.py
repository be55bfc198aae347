from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from pytest_bluegreen.adapters.databases.postgres import (
    DatabaseBackup,
    checksum_file,
    file_sha256,
    parse_row_counts,
    rotate,
    verify_checksum,
    write_checksum,
)
from pytest_bluegreen.core.errors import BackupError


def make_dump(folder: Path, name: str, mtime: int, content: bytes = b"PGDMP") -> Path:
    path = folder / f"{name}.dump"
    path.write_bytes(content + name.encode())
    write_checksum(path)
    os.utime(path, (mtime, mtime))
    return path


# --- rotation ---------------------------------------------------------------------------------


def test_rotate_keeps_the_newest_by_mtime_and_removes_their_sidecars(tmp_path: Path) -> None:
    # Names sort the other way round from ages: rotation goes by modification time.
    dumps = [make_dump(tmp_path, f"b{9 - age}", 1_000_000 + age) for age in range(5)]
    removed = rotate(tmp_path, keep=2)
    assert removed == [dumps[2], dumps[1], dumps[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "b5.dump",
        "b5.dump.sha256",
        "b6.dump",
        "b6.dump.sha256",
    ]


def test_rotate_breaks_mtime_ties_by_name(tmp_path: Path) -> None:
    for name in ("2024-01-03", "2024-01-01", "2024-01-02"):
        make_dump(tmp_path, name, 1_000_000)
    rotate(tmp_path, keep=1)
    assert sorted(p.name for p in tmp_path.glob("*.dump")) == ["2024-01-03.dump"]


def test_rotate_ignores_unrelated_files(tmp_path: Path) -> None:
    make_dump(tmp_path, "old", 1_000_000)
    make_dump(tmp_path, "new", 2_000_000)
    unrelated = ["notes.txt", "db.sql", "orphan.dump.sha256", ".new.dump.partial-1a2b", "a.dumpx"]
    for name in unrelated:
        (tmp_path / name).write_text("keep me")
    (tmp_path / "folder.dump").mkdir()
    os.utime(tmp_path / "notes.txt", (3_000_000, 3_000_000))
    assert rotate(tmp_path, keep=1) == [tmp_path / "old.dump"]
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"new.dump", "new.dump.sha256", "folder.dump", *unrelated}


def test_rotate_with_fewer_dumps_than_keep_removes_nothing(tmp_path: Path) -> None:
    make_dump(tmp_path, "only", 1_000_000)
    assert rotate(tmp_path, keep=10) == []
    assert (tmp_path / "only.dump").exists()


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_below_one_is_refused(tmp_path: Path, keep: int) -> None:
    make_dump(tmp_path, "precious", 1_000_000)
    with pytest.raises(ValueError, match="keep must be at least 1"):
        rotate(tmp_path, keep)
    with pytest.raises(ValueError, match="keep must be at least 1"):
        DatabaseBackup("c", "aptos", "aptos_user", tmp_path, keep=keep)
    assert (tmp_path / "precious.dump").exists()


# --- checksums --------------------------------------------------------------------------------


def test_sidecar_is_sha256sum_format_and_private(tmp_path: Path) -> None:
    dump = tmp_path / "x.dump"
    dump.write_bytes(b"PGDMP" + bytes(range(256)) * 100)
    digest = write_checksum(dump)
    sidecar = checksum_file(dump)
    assert sidecar == tmp_path / "x.dump.sha256"
    assert digest == file_sha256(dump)
    assert sidecar.read_text() == f"{digest}  x.dump\n"
    assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600
    if shutil.which("sha256sum"):
        check = subprocess.run(
            ["sha256sum", "-c", sidecar.name], cwd=tmp_path, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr


def test_verify_checksum_good_tampered_and_missing(tmp_path: Path) -> None:
    dump = tmp_path / "x.dump"
    dump.write_bytes(b"PGDMP original")
    assert not verify_checksum(dump), "no sidecar yet"
    write_checksum(dump)
    assert verify_checksum(dump)
    dump.write_bytes(b"PGDMP originaL")
    assert not verify_checksum(dump)
    dump.unlink()
    assert not verify_checksum(dump), "sidecar without its dump"


def test_verify_checksum_reads_binary_marker_and_upper_case(tmp_path: Path) -> None:
    dump = tmp_path / "x.dump"
    dump.write_bytes(b"PGDMP")
    checksum_file(dump).write_text(f"{file_sha256(dump).upper()} *x.dump\n")
    assert verify_checksum(dump)


@pytest.mark.parametrize(
    "sidecar",
    ["", "garbage\n", "{digest}  other.dump\n", "{digest}x.dump\n", "{short}  x.dump\n"],
)
def test_verify_checksum_rejects_malformed_sidecars(tmp_path: Path, sidecar: str) -> None:
    dump = tmp_path / "x.dump"
    dump.write_bytes(b"PGDMP")
    digest = file_sha256(dump)
    checksum_file(dump).write_text(sidecar.format(digest=digest, short=digest[:-1]))
    assert not verify_checksum(dump)


# --- row counts -------------------------------------------------------------------------------


def test_parses_the_counts_line_among_other_output() -> None:
    output = (
        "pg_dump: warning: something harmless\n"
        'BG-ROWCOUNTS { "Odd \\"Name\\"" : 2, "line\\nbreak" : 0, "orders" : 12345 }\n'
        "more noise\n"
    )
    assert parse_row_counts(output) == {'Odd "Name"': 2, "line\nbreak": 0, "orders": 12345}


def test_parses_an_empty_schema() -> None:
    assert parse_row_counts("BG-ROWCOUNTS {}\n") == {}


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("", "expected one row-count line from the database, got 0"),
        ("BG-ROWCOUNTS {}\nBG-ROWCOUNTS {}\n", "got 2"),
        ("BG-ROWCOUNTS {not json\n", "unreadable row counts"),
        ('BG-ROWCOUNTS ["t", 1]\n', "unreadable row counts"),
        ('BG-ROWCOUNTS {"t": "1"}\n', "unreadable row counts"),
        ('BG-ROWCOUNTS {"t": -1}\n', "unreadable row counts"),
        ('BG-ROWCOUNTS {"t": 1.5}\n', "unreadable row counts"),
        ('BG-ROWCOUNTS {"t": true}\n', "unreadable row counts"),
    ],
)
def test_bad_counts_output_is_a_backup_error(output: str, message: str) -> None:
    with pytest.raises(BackupError, match=message):
        parse_row_counts(output)


# --- create and restore against a fake docker CLI ----------------------------------------------

FAKE_DOCKER = r"""#!/bin/bash
# Stands in for the docker CLI: the dump prints DUMP_OUT/DUMP_ERR and exits DUMP_RC; psql answers
# the count query with RESTORED_COUNTS; everything is logged.
log=LOG
printf 'ARGV %s\n' "$*" >>"$log"
if [[ " $* " == *" bg-backup "* ]]; then
  printf '%s' 'DUMP_OUT'
  printf '%s\n' 'DUMP_ERR' >&2
  exit DUMP_RC
fi
input=''
if [[ " $* " == *" -i "* ]]; then input=$(cat); printf 'STDIN %s\n' "$input" >>"$log"; fi
if [[ $input == *BG-ROWCOUNTS* ]]; then printf '%s\n' 'RESTORED_COUNTS'; fi
exit 0
"""


def fake_docker(
    tmp_path: Path,
    *,
    dump_out: str = "PGDMP fake",
    dump_err: str = 'BG-ROWCOUNTS {"t": 3}',
    dump_rc: int = 0,
    restored: str = 'BG-ROWCOUNTS {"t": 3}',
) -> tuple[str, Path]:
    log = tmp_path / "docker.log"
    script = tmp_path / "fake-docker"
    text = FAKE_DOCKER.replace("LOG", str(log)).replace("DUMP_OUT", dump_out)
    text = text.replace("DUMP_ERR", dump_err).replace("DUMP_RC", str(dump_rc))
    script.write_text(text.replace("RESTORED_COUNTS", restored))
    script.chmod(0o755)
    return str(script), log


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    """A backup folder that already holds one good, older backup."""
    folder = tmp_path / "backups"
    folder.mkdir()
    make_dump(folder, "older", 1_000_000)
    return folder


def older_only(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == ["older.dump", "older.dump.sha256"]
    assert verify_checksum(folder / "older.dump")


def test_a_verified_backup_is_published_private_and_rotates(tmp_path: Path) -> None:
    docker, log = fake_docker(tmp_path)
    folder = tmp_path / "new" / "backups"
    backup = DatabaseBackup("cid", "aptos", "aptos_user", folder, keep=1, docker=[docker])
    first = backup.backup("first")
    assert first.path == folder / "first.dump"
    assert first.path.read_bytes() == b"PGDMP fake"
    assert first.size_bytes == len(b"PGDMP fake")
    assert first.sha256 == file_sha256(first.path)
    assert first.row_counts == {"t": 3}
    assert verify_checksum(first.path)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    os.utime(first.path, (1_000_000, 1_000_000))
    backup.backup("second")
    assert sorted(p.name for p in folder.iterdir()) == ["second.dump", "second.dump.sha256"]
    calls = log.read_text()
    assert "CREATE DATABASE" in calls
    assert calls.count("DROP DATABASE") == 2, "the scratch database is dropped after each"
    assert "timeout 600 bash" in calls, "bounded inside the container too"


def test_a_failed_dump_leaves_nothing_and_rotates_nothing(tmp_path: Path, backups: Path) -> None:
    docker, log = fake_docker(
        tmp_path, dump_err="pg_dump: error: connection to server lost", dump_rc=1
    )
    backup = DatabaseBackup("cid", "aptos", "aptos_user", backups, keep=1, docker=[docker])
    with pytest.raises(BackupError, match=r"(?s)pg_dump of database 'aptos' failed \(exit 1\)"):
        backup.backup("new")
    older_only(backups)
    assert "bg-stop" in log.read_text(), "what is left in the container is stopped"


def test_a_dump_that_timed_out_in_the_container_says_so(tmp_path: Path, backups: Path) -> None:
    docker, _ = fake_docker(tmp_path, dump_rc=124)
    backup = DatabaseBackup("cid", "aptos", "aptos_user", backups, docker=[docker], timeout_s=5)
    with pytest.raises(BackupError, match="did not finish within 5s"):
        backup.backup("new")
    older_only(backups)


def test_counts_that_differ_after_restore_fail_and_drop_the_scratch_database(
    tmp_path: Path, backups: Path
) -> None:
    docker, log = fake_docker(tmp_path, restored='BG-ROWCOUNTS {"t": 2, "u": 0}')
    backup = DatabaseBackup("cid", "aptos", "aptos_user", backups, keep=1, docker=[docker])
    with pytest.raises(BackupError, match=r"t: 3 != 2; u: missing != 0") as failure:
        backup.backup("new")
    assert "The dump was discarded" in str(failure.value)
    older_only(backups)
    assert "DROP DATABASE" in log.read_text()


def test_an_existing_name_is_never_overwritten(tmp_path: Path, backups: Path) -> None:
    docker, log = fake_docker(tmp_path)
    backup = DatabaseBackup("cid", "aptos", "aptos_user", backups, docker=[docker])
    with pytest.raises(BackupError, match=r"older\.dump already exists"):
        backup.backup("older")
    older_only(backups)
    assert not log.exists(), "refused before running anything"


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "with space", "x" * 201])
def test_names_must_be_plain_short_file_names(tmp_path: Path, name: str) -> None:
    backup = DatabaseBackup("cid", "aptos", "aptos_user", tmp_path / "b")
    with pytest.raises(BackupError, match="backup name"):
        backup.backup(name)
    assert not (tmp_path / "b").exists(), "refused before anything is made"


def test_a_missing_docker_cli_is_a_clear_error(tmp_path: Path, backups: Path) -> None:
    backup = DatabaseBackup("cid", "aptos", "aptos_user", backups, docker=[str(tmp_path / "nope")])
    with pytest.raises(BackupError, match="not installed or not on PATH"):
        backup.backup("new")
    older_only(backups)


def test_restore_checks_the_checksum_before_touching_the_database(
    tmp_path: Path, backups: Path
) -> None:
    docker, log = fake_docker(tmp_path)
    backup = DatabaseBackup("cid", "aptos", "aptos_user", backups, docker=[docker])
    dump = backups / "older.dump"
    dump.write_bytes(dump.read_bytes() + b"!")
    with pytest.raises(BackupError, match="does not match its checksum"):
        backup.restore(dump, "copy")
    checksum_file(dump).unlink()
    with pytest.raises(BackupError, match="has no checksum file"):
        backup.restore(dump, "copy")
    with pytest.raises(BackupError, match="no backup file"):
        backup.restore(backups / "absent.dump", "copy")
    assert not log.exists()


def test_the_longest_name_fits_every_file_it_makes(tmp_path: Path) -> None:
    docker, _ = fake_docker(tmp_path)
    backup = DatabaseBackup("cid", "aptos", "aptos_user", tmp_path / "b", docker=[docker])
    result = backup.backup("x" * 200)
    assert verify_checksum(result.path)
