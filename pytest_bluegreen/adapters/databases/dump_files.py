"""What every kind of pre-deploy backup shares: its files, checksums and row counts.

A backup is made the same way whatever the database (:mod:`.postgres`, :mod:`.mysql`,
:mod:`.commands`): streamed from a command in the database container into a hidden 0600 file of
a 0700 folder, checksummed on the way, verified, then published under its final name beside a
``sha256sum``-format sidecar, and only then are old backups rotated away. A backup that fails
anywhere leaves no file behind, and a published one never lacks its checksum.

The commands that make a backup run in the database container through
:class:`~.container_exec.ContainerExec`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from pytest_bluegreen.core.errors import BackupError
from pytest_bluegreen.core.files import fsync_dir, write_atomically
from pytest_bluegreen.core.ports import BackupResult

COUNTS_PREFIX: Final = "BG-ROWCOUNTS "
DEFAULT_TIMEOUT_S: Final = 600.0
CHUNK: Final = 1 << 20
STDERR_TAIL_LINES: Final = 20
# Plain file names, short enough for "." + name + ".sql.gz.sha256.partial-xxxxxxxx" in 255 bytes.
BACKUP_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
SIDECAR_LINE: Final = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


class Encoder(Protocol):
    """Turns a stream into what is stored, chunk by chunk (e.g. a ``zlib.compressobj``)."""

    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Dumped:
    """A dump in its temporary file, not yet verified."""

    sha256: str
    size_bytes: int
    row_counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class Streamed:
    """How a streamed command ended: the stored file's checksum and size, and what it said."""

    sha256: str
    size_bytes: int
    returncode: int
    stderr: str
    tail: bytes  # the last bytes of its output, before encoding


# --- making a backup ------------------------------------------------------------------------


def make_backup(
    backup_dir: Path,
    name: str,
    suffix: str,
    keep: int,
    dump: Callable[[Path], Dumped],
    verify: Callable[[Path, Dumped], None],
) -> BackupResult:
    """Dump into a hidden file, verify it, publish it as ``<name><suffix>``, rotate the rest.

    ``dump`` writes the temporary file it is given; ``verify`` raises a :class:`BackupError`
    when the dump does not restore to what it was taken from.
    """
    final = final_path(backup_dir, name, suffix)
    sidecar = checksum_file(final)
    tmp = backup_dir / f".{final.name}.partial-{secrets.token_hex(4)}"
    published = False
    try:
        start = time.monotonic()
        dumped = dump(tmp)
        dumped_at = time.monotonic()
        verify(tmp, dumped)
        verify_s = time.monotonic() - dumped_at
        publish(tmp, final, dumped.sha256)
        published = True
    finally:
        if not published:
            remove_quietly(tmp)
            remove_quietly(sidecar)
    try:
        rotate(backup_dir, keep, suffix)
    except OSError as exc:
        raise BackupError(
            f"the backup {final} is made and verified, but removing old backups failed "
            f"({exc}); fix the permissions of {backup_dir} or remove them by hand"
        ) from None
    return BackupResult(
        final, dumped.sha256, dumped.size_bytes, dumped.row_counts, dumped_at - start, verify_s
    )


def final_path(backup_dir: Path, name: str, suffix: str) -> Path:
    """Check the name and the folder before anything is dumped; make the folder, private."""
    if not BACKUP_NAME.fullmatch(name):
        raise BackupError(
            f"backup name {name!r} must be 1 to 200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit; use a plainer release name"
        )
    final = backup_dir / f"{name}{suffix}"
    if final.exists() or checksum_file(final).exists():
        raise BackupError(
            f"a backup named {final.name} already exists in {backup_dir}; "
            "choose another name (backups are never overwritten)"
        )
    try:
        make_private_dir(backup_dir)
    except OSError as exc:
        raise BackupError(
            f"cannot create the backup folder {backup_dir}: {exc.strerror}; "
            "create it or choose another folder"
        ) from None
    return final


def publish(tmp: Path, final: Path, sha256: str) -> None:
    """Write the sidecar, then rename the dump: a published dump never lacks its checksum."""
    try:
        write_checksum(final, sha256)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except OSError as exc:
        raise BackupError(write_failed(final.parent, exc)) from None


class RestorableServer(Protocol):
    """What a restore needs of a database server whose databases can be created and dropped."""

    def drop_database(self, database: str) -> None: ...
    def _database_exists(self, database: str) -> bool: ...
    def _create_database(self, database: str) -> None: ...


def restore_into(
    server: RestorableServer,
    path: Path,
    database: str,
    load: Callable[[Path, str], None],
    *,
    replace: bool,
) -> None:
    """Restore a checked dump into ``database``, new unless ``replace`` drops it first.

    A restore that fails half-way drops what it created: no half-restored database stays.
    """
    check_restorable(path)
    if replace:
        server.drop_database(database)
    elif server._database_exists(database):
        raise BackupError(
            f"database {database!r} already exists; restore into a new name, "
            "or pass replace=True to drop it first"
        )
    server._create_database(database)
    try:
        load(path, database)
    except BackupError as exc:
        with contextlib.suppress(BackupError):
            server.drop_database(database)
        message = f"{exc}\nThe partly restored database {database!r} was dropped."
        raise BackupError(message) from None


def check_restorable(path: Path) -> None:
    """Refuse a dump that is missing, has no sidecar, or changed since it was made."""
    if not path.is_file():
        raise BackupError(f"no backup file {path}; pass the path of an existing backup")
    if not checksum_file(path).is_file():
        raise BackupError(
            f"{path} has no checksum file {checksum_file(path).name}; refusing to restore "
            "a dump whose integrity cannot be checked"
        )
    if not verify_checksum(path):
        raise BackupError(
            f"{path} does not match its checksum in {checksum_file(path).name}: it changed "
            "after it was made; do not restore it, restore an older backup instead"
        )


def rotate(backup_dir: Path, keep: int, suffix: str = ".dump") -> list[Path]:
    """Remove all but the newest ``keep`` backups and their checksums; return those removed.

    Newest by modification time, then by name; only visible ``*<suffix>`` files count, so
    partial files, sidecars and anything else stay untouched.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    dumps = [
        path
        for path in backup_dir.glob(f"*{suffix}")
        if path.is_file() and not path.name.startswith(".")
    ]
    dumps.sort(key=lambda path: (path.stat().st_mtime_ns, path.name), reverse=True)
    removed = dumps[keep:]
    for path in removed:
        path.unlink(missing_ok=True)
        checksum_file(path).unlink(missing_ok=True)
    return removed


# --- checksums ------------------------------------------------------------------------------


def checksum_file(path: Path) -> Path:
    """The ``sha256sum``-format sidecar of ``path``."""
    return path.with_name(f"{path.name}.sha256")


def write_checksum(path: Path, sha256: str | None = None) -> str:
    """Write ``path``'s sidecar, 0600, in ``sha256sum`` format; hash the file unless given."""
    sha256 = sha256 or file_sha256(path)
    write_atomically(checksum_file(path), f"{sha256}  {path.name}\n", mode=0o600)
    return sha256


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path) -> bool:
    """True when ``path`` matches its sidecar; False when it differs or either file is missing."""
    try:
        line = checksum_file(path).read_text(encoding="utf-8").partition("\n")[0]
    except FileNotFoundError:
        return False
    match = SIDECAR_LINE.fullmatch(line)
    if match is None or match.group(2) != path.name:
        return False
    try:
        return file_sha256(path) == match.group(1).lower()
    except FileNotFoundError:
        return False


# --- row counts -----------------------------------------------------------------------------


def parse_row_counts(output: str) -> dict[str, int]:
    """The table -> rows mapping from the one ``BG-ROWCOUNTS {json}`` line of ``output``."""
    lines = [line for line in output.splitlines() if line.startswith(COUNTS_PREFIX)]
    if len(lines) != 1:
        raise BackupError(
            f"expected one row-count line from the database, got {len(lines)}:\n{tail(output)}"
        )
    try:
        counts = json.loads(lines[0][len(COUNTS_PREFIX) :])
    except json.JSONDecodeError as exc:
        raise BackupError(f"unreadable row counts from the database ({exc})") from None
    if not isinstance(counts, dict) or not all(
        isinstance(table, str) and type(rows) is int and rows >= 0 for table, rows in counts.items()
    ):
        raise BackupError(f"unreadable row counts from the database: {lines[0]!r}")
    return {str(table): int(rows) for table, rows in counts.items()}


def check_counts(expected: Mapping[str, int], restored: Mapping[str, int]) -> None:
    """Raise when the restored copy's row counts are not the snapshot's."""
    tables = sorted(expected.keys() | restored.keys())
    differences = [
        f"{table}: {expected.get(table, 'missing')} != {restored.get(table, 'missing')}"
        for table in tables
        if expected.get(table) != restored.get(table)
    ]
    if differences:
        raise BackupError(
            "the backup does not restore to the data it was taken from "
            f"(table: snapshot rows != restored rows): {'; '.join(differences)}. "
            "The dump was discarded; check the database logs and deploy again."
        )


# --- small helpers --------------------------------------------------------------------------


def make_private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        return
    path.chmod(0o700)  # mkdir's mode is filtered by the umask


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    """The last lines a command said, without the row counts line."""
    kept = [line for line in text.strip().splitlines() if not line.startswith(COUNTS_PREFIX)]
    return "\n".join(kept[-lines:]) or "(no output)"


def write_failed(folder: Path, exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"not enough space for the backup in {folder} ({exc.strerror}); free space there "
            "or choose another backup folder, then deploy again. No partial file was left."
        )
    return (
        f"cannot write the backup in {folder}: {exc.strerror}; fix the folder "
        "(permissions, mount) or choose another one. No partial file was left."
    )
