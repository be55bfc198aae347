"""The machine-readable record of one deploy: what ran, how it ended, and the figures that prove it.

A record is saved after every stage, so a deploy that is killed still leaves what it got through.
``<state_dir>/deploys/<id>.json`` keeps every run; ``<state_dir>/last-deploy.json`` is the latest,
for tools that only ask "how did the last deploy go?".
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
import re
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, Literal

from pytest_bluegreen.core.colours import Colour, is_colour
from pytest_bluegreen.core.files import write_atomically

Result = Literal["running", "deployed", "aborted", "rolled_back", "interrupted"]
RESULTS: Final[tuple[Result, ...]] = (
    "running",
    "deployed",
    "aborted",
    "rolled_back",
    "interrupted",
)
STAGE_OUTCOMES: Final[tuple[str, ...]] = ("passed", "failed", "skipped", "error")

# A record's masking (the reporting's secret policy, e.g. ``SecretPolicy.mask_json``): JSON-like
# value in, the same shape out with every secret masked. The core does not know the policy itself.
Mask = Callable[[Any], Any]
# What the tool itself writes and a reader checks: never masked, so a short secret that happens to
# be part of an id or a timestamp ("2026") cannot make a record unreadable.
_UNMASKED_KEYS: Final = frozenset(
    {"id", "from_colour", "to_colour", "result", "started_at", "finished_at", "pid"}
)
_UNMASKED_STAGE_KEYS: Final = frozenset({"outcome", "duration_s"})

# Ids name files, so they are checked before they become part of a path (no "/" and no "..").
_DEPLOY_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# One random start per process, then counting: ids of one process never collide, and two
# processes would have to start within a few ids of each other in the same second to collide.
_ID_SUFFIXES: Final = itertools.count(secrets.randbelow(1 << 24))


def _as_utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError(f"a naive datetime ({now}) is ambiguous; pass a timezone-aware one")
    return now.astimezone(timezone.utc)


def utc_timestamp(now: datetime | None = None) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``, e.g. ``2026-11-29T00:15:03.123Z``."""
    moment = _as_utc(now)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime:
    """The inverse of :func:`utc_timestamp`; also accepts any offset ``fromisoformat`` knows."""
    moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no timezone")
    return moment.astimezone(timezone.utc)


def new_deploy_id(now: datetime | None = None) -> str:
    """A unique id that sorts by start time: ``20261129T001503Z-`` and 6 hex characters."""
    suffix = next(_ID_SUFFIXES) % (1 << 24)
    return f"{_as_utc(now):%Y%m%dT%H%M%SZ}-{suffix:06x}"


@dataclass(slots=True)
class StageRecord:
    name: str
    outcome: str  # one of STAGE_OUTCOMES
    duration_s: float
    message: str = ""  # short reason for a failure or a skip

    @classmethod
    def from_dict(cls, data: object, where: str = "stage") -> StageRecord:
        read = _Reader(data, where)
        return cls(
            name=read.text("name"),
            outcome=read.text("outcome"),
            duration_s=read.number("duration_s"),
            message=read.text("message", default=""),
        )


@dataclass(slots=True)
class DeployRecord:
    id: str
    release: str
    from_colour: Colour | None  # None on the first deploy of an empty host
    to_colour: Colour | None  # None until the colours stage has run
    result: Result = "running"
    started_at: str = field(default_factory=utc_timestamp)
    finished_at: str | None = None
    duration_s: float | None = None
    stages: list[StageRecord] = field(default_factory=list)
    backup: dict[str, Any] | None = None  # file, sha256, size_bytes, row_counts, dump_s, verify_s
    migration: dict[str, Any] | None = None  # the rehearsal: pending migrations, seconds
    switch: dict[str, Any] | None = None  # SwitchResult figures in ms
    load: dict[str, Any] | None = None  # requests, failures, p50/p99 before and during the switch
    rollback_s: float | None = None  # failed verdict -> old colour serving every new request
    rollback_verified_s: float | None = None
    error: str | None = None
    # The last lines of each service of a colour that failed (aborted or rolled back from).
    logs: dict[str, Any] | None = None
    reports: dict[str, Any] | None = None  # the session's HTML report and JUnit file, if any
    # Where each service's containers or tasks ran when the deploy ended: service -> hosts.
    placement: dict[str, Any] | None = None
    pid: int = field(default_factory=os.getpid)
    hostname: str = field(default_factory=socket.gethostname)

    def stage(self, name: str) -> StageRecord | None:
        return next((stage for stage in self.stages if stage.name == name), None)

    def set_stage(self, name: str, outcome: str, duration_s: float, message: str = "") -> None:
        """Add a stage, or replace the one of that name where it first appeared (a retry)."""
        if outcome not in STAGE_OUTCOMES:
            raise ValueError(f"stage outcome {outcome!r} is not one of {', '.join(STAGE_OUTCOMES)}")
        entry = StageRecord(name, outcome, float(duration_s), message)
        for index, stage in enumerate(self.stages):
            if stage.name == name:
                self.stages[index] = entry
                return
        self.stages.append(entry)

    def finish(self, result: Result, error: str | None = None, now: datetime | None = None) -> None:
        """Close the record; the duration is wall-clock time since ``started_at``."""
        if result not in RESULTS or result == "running":
            raise ValueError(
                f"a deploy finishes with one of {', '.join(RESULTS[1:])}, not {result!r}"
            )
        moment = _as_utc(now)
        self.result = result
        self.error = error
        self.finished_at = utc_timestamp(moment)
        try:
            started = parse_timestamp(self.started_at)
        except ValueError:
            # Finishing runs on failure paths too; a bad start time must not hide the outcome.
            self.duration_s = None
        else:
            # A wall clock stepped back by NTP would give a negative duration: that is no duration.
            self.duration_s = round(max(0.0, (moment - started).total_seconds()), 3)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, in field order; nested dicts are copies, safe to change."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> DeployRecord:
        """Check every known key's type (ValueError names the key); unknown keys are ignored.

        Records written by a newer version load as long as the keys this version knows hold
        what it expects.
        """
        read = _Reader(data, "deploy record")
        return cls(
            id=read.text("id"),
            release=read.text("release"),
            from_colour=read.get("from_colour", "a colour or null", _is_colour_or_none),
            to_colour=read.get("to_colour", "a colour or null", _is_colour_or_none),
            result=read.get("result", f"one of {', '.join(RESULTS)}", _is_result, "running"),
            started_at=read.get("started_at", "a timestamp", _is_timestamp),
            finished_at=read.get("finished_at", "a timestamp or null", _is_timestamp_or_none, None),
            duration_s=read.optional_number("duration_s"),
            stages=[
                StageRecord.from_dict(item, f"deploy record key 'stages[{index}]'")
                for index, item in enumerate(read.get("stages", "a list", _is_list, []))
            ],
            backup=read.optional_object("backup"),
            migration=read.optional_object("migration"),
            switch=read.optional_object("switch"),
            load=read.optional_object("load"),
            rollback_s=read.optional_number("rollback_s"),
            rollback_verified_s=read.optional_number("rollback_verified_s"),
            error=read.get("error", "a string or null", _is_str_or_none, None),
            logs=read.optional_object("logs"),
            reports=read.optional_object("reports"),
            placement=read.optional_object("placement"),
            pid=read.get("pid", "an integer", _is_int),
            hostname=read.text("hostname"),
        )


_REQUIRED: Final = object()


class _Reader:
    """Typed access to the keys of one JSON object; every error names the key."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} must be a JSON object, not {type(data).__name__}")
        self.values: Mapping[str, Any] = data
        self.where = where

    def get(
        self, key: str, expected: str, check: Callable[[Any], bool], default: Any = _REQUIRED
    ) -> Any:
        """``values[key]`` when it passes ``check``; a missing key without a default is an error."""
        if key not in self.values:
            if default is _REQUIRED:
                raise ValueError(f"{self.where}: missing key {key!r}")
            return default
        value = self.values[key]
        if not check(value):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise ValueError(f"{self.where}: key {key!r} must be {expected}, not {shown}")
        return value

    def text(self, key: str, default: Any = _REQUIRED) -> str:
        return str(self.get(key, "a string", _is_str, default))

    def number(self, key: str) -> float:
        return float(self.get(key, "a number", _is_number))

    def optional_number(self, key: str) -> float | None:
        value = self.get(key, "a number or null", _is_number_or_none, None)
        return None if value is None else float(value)

    def optional_object(self, key: str) -> dict[str, Any] | None:
        value = self.get(key, "an object or null", _is_object_or_none, None)
        # A copy: the record must not change when the caller's dict does, nor the other way round.
        return None if value is None else copy.deepcopy(dict(value))


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(key, str) for key in value)


def _is_str_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_number_or_none(value: Any) -> bool:
    return value is None or _is_number(value)


def _is_object_or_none(value: Any) -> bool:
    return value is None or _is_object(value)


def _is_timestamp_or_none(value: Any) -> bool:
    return value is None or _is_timestamp(value)


def _is_result(value: Any) -> bool:
    return value in RESULTS


def _is_colour_or_none(value: Any) -> bool:
    return value is None or is_colour(value)


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_timestamp(value)
    except ValueError:
        return False
    return True


def _check_deploy_id(deploy_id: str) -> str:
    if not _DEPLOY_ID_PATTERN.fullmatch(deploy_id):
        raise ValueError(f"{deploy_id!r} is not a deploy id (letters, digits, '.', '_', '-')")
    return deploy_id


def masked_record(data: Mapping[str, Any], mask: Mask) -> dict[str, Any]:
    """A record's dict (:meth:`DeployRecord.to_dict`) with ``mask`` applied to every value.

    Keys stay as they are, and so do the values the tool itself makes and a reader checks (id,
    colours, result, times, stage outcomes): the masked record still loads. ValueError when
    ``mask`` returns what no record holds.
    """
    masked: dict[str, Any] = {}
    for key, value in data.items():
        if key in _UNMASKED_KEYS:
            masked[key] = value
        elif key == "stages":
            masked[key] = [
                {k: v if k in _UNMASKED_STAGE_KEYS else mask(v) for k, v in stage.items()}
                for stage in value
            ]
        else:
            masked[key] = mask(value)
    try:
        DeployRecord.from_dict(masked)
    except ValueError as exc:  # rather than write a record no reader can load
        raise ValueError(f"the mask made the record unreadable: {exc}") from None
    return masked


class RecordStore:
    """Every run in ``<state_dir>/deploys/<id>.json``, the latest in ``last-deploy.json``.

    Files are private to the user (0600): an error message can quote more than it should.
    ``mask`` (e.g. the secret policy's ``mask_json``) is applied to every record saved, so no
    secret reaches the files; without one, records are written as they are.
    """

    def __init__(self, state_dir: Path, mask: Mask | None = None) -> None:
        self.state_dir = state_dir
        self.deploys_dir = state_dir / "deploys"
        self.last_path = state_dir / "last-deploy.json"
        self.mask = mask

    def path_of(self, deploy_id: str) -> Path:
        return self.deploys_dir / f"{_check_deploy_id(deploy_id)}.json"

    def save(self, record: DeployRecord, mask: Mask | None = None) -> Path:
        """Write the record and make it the latest; returns the path of its own file.

        ``mask`` (default: the store's) masks the secrets in what is written; ``record`` itself
        is left as it is.
        """
        path = self.path_of(record.id)
        data = record.to_dict()
        mask = mask or self.mask
        if mask is not None:
            data = masked_record(data, mask)
        # default=str: a Path or a datetime in a figures dict must not lose the whole record.
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
        self.deploys_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text)
        write_atomically(self.last_path, text)
        return path

    def load(self, deploy_id: str) -> DeployRecord:
        path = self.path_of(deploy_id)
        if not path.is_file():
            raise FileNotFoundError(2, f"no record of deploy {deploy_id!r}", str(path))
        record = _read(path)
        if record.id != deploy_id:
            raise ValueError(f"{path}: holds deploy {record.id!r}, not {deploy_id!r}")
        return record

    def last(self) -> DeployRecord | None:
        """The latest deploy, or None before the first one."""
        if not self.last_path.is_file():
            return None
        return _read(self.last_path)

    def history(self, limit: int = 20) -> list[DeployRecord]:
        """Up to ``limit`` records, newest first (ids sort by start time)."""
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit}")
        if not self.deploys_dir.is_dir():
            return []
        ids = sorted(
            (
                path.stem
                for path in self.deploys_dir.glob("*.json")
                if _DEPLOY_ID_PATTERN.fullmatch(path.stem)
            ),
            reverse=True,
        )
        return [self.load(deploy_id) for deploy_id in ids[:limit]]


def _read(path: Path) -> DeployRecord:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return DeployRecord.from_dict(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        raise ValueError(f"{path}: not a valid deploy record: {exc}") from None
