from __future__ import annotations

import json
import os
import re
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.core.record import (
    DeployRecord,
    RecordStore,
    StageRecord,
    new_deploy_id,
    parse_timestamp,
    utc_timestamp,
)

START = datetime(2026, 11, 29, 0, 15, 3, 123456, tzinfo=timezone.utc)


def full_record(deploy_id: str = "20261129T001503Z-ab12cd") -> DeployRecord:
    record = DeployRecord(
        id=deploy_id,
        release="r42",
        from_colour="blue",
        to_colour="green",
        started_at=utc_timestamp(START),
    )
    record.set_stage("backup", "passed", 3.25)
    record.set_stage("switch", "passed", 0.012)
    record.set_stage("verify", "failed", 1.5, "3 of 200 requests failed")
    record.backup = {
        "file": "/srv/backups/r42.sql.gz",
        "sha256": "ab" * 32,
        "size_bytes": 12345,
        "row_counts": {"users": 10, "orders": 3},
        "dump_s": 1.2,
        "verify_s": 0.4,
    }
    record.switch = {"preflight_ms": 1.5, "switch_ms": 0.4, "persist_ms": 0.9, "verify_ms": 0.3}
    record.load = {"requests": 2000, "failures": 0, "p50_ms": {"before": 4.0, "during": 4.5}}
    record.rollback_s = 0.41
    record.rollback_verified_s = 2.0
    record.finish(
        "rolled_back", "post-switch verification failed", now=START + timedelta(seconds=41)
    )
    return record


def test_timestamps_are_utc_with_milliseconds_and_z() -> None:
    assert utc_timestamp(START) == "2026-11-29T00:15:03.123Z"
    plus_one = datetime(2026, 11, 29, 1, 15, 3, tzinfo=timezone(timedelta(hours=1)))
    assert utc_timestamp(plus_one) == "2026-11-29T00:15:03.000Z"
    assert parse_timestamp("2026-11-29T00:15:03.123Z") == START.replace(microsecond=123000)
    with pytest.raises(ValueError, match="naive"):
        utc_timestamp(datetime(2026, 11, 29))


def test_new_record_starts_now_and_running() -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    record = DeployRecord(id="x", release="r1", from_colour=None, to_colour="blue")
    assert record.result == "running"
    assert parse_timestamp(record.started_at) >= before
    assert record.pid == os.getpid()
    assert record.hostname


def test_round_trip_is_exact() -> None:
    record = full_record()
    data = record.to_dict()
    assert DeployRecord.from_dict(data) == record
    assert DeployRecord.from_dict(data).to_dict() == data
    # Through JSON text too, as the store does.
    assert DeployRecord.from_dict(json.loads(json.dumps(data))) == record


def test_to_dict_and_from_dict_do_not_share_nested_dicts() -> None:
    record = full_record()
    data = record.to_dict()
    data["backup"]["row_counts"]["users"] = 999
    assert record.backup is not None
    assert record.backup["row_counts"]["users"] == 10
    loaded = DeployRecord.from_dict(data)
    data["backup"]["row_counts"]["users"] = 5
    assert loaded.backup is not None
    assert loaded.backup["row_counts"]["users"] == 999


def test_first_deploy_has_no_from_colour() -> None:
    record = DeployRecord(id="x", release="r1", from_colour=None, to_colour="blue")
    assert DeployRecord.from_dict(record.to_dict()).from_colour is None


def test_from_dict_ignores_unknown_keys() -> None:
    data = full_record().to_dict()
    data["canary_percent"] = 5  # a key of some later version
    data["stages"][0]["retries"] = 2
    assert DeployRecord.from_dict(data) == full_record()


def test_from_dict_fills_optional_keys_with_defaults() -> None:
    data = {
        "id": "x",
        "release": "r1",
        "from_colour": "blue",
        "to_colour": "green",
        "started_at": "2026-11-29T00:15:03.123Z",
        "pid": 7,
        "hostname": "deployhost",
    }
    record = DeployRecord.from_dict(data)
    assert record.result == "running"
    assert record.stages == []
    assert record.backup is None
    assert record.pid == 7


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("id", 42),
        ("release", None),
        ("from_colour", "purple"),
        ("to_colour", "red"),
        ("result", "exploded"),
        ("started_at", "yesterday"),
        ("finished_at", 1700000000),
        ("duration_s", "41.2"),
        ("duration_s", True),
        ("stages", {"backup": "passed"}),
        ("backup", ["not", "an", "object"]),
        ("switch", "fast"),
        ("load", 3),
        ("rollback_s", "0.4"),
        ("rollback_verified_s", [1]),
        ("error", 500),
        ("pid", 1.5),
        ("hostname", None),
    ],
)
def test_from_dict_wrong_type_names_the_key(key: str, value: Any) -> None:
    data = full_record().to_dict()
    data[key] = value
    with pytest.raises(ValueError, match=rf"key '{key}'"):
        DeployRecord.from_dict(data)


def test_from_dict_wrong_stage_names_stage_and_key() -> None:
    data = full_record().to_dict()
    data["stages"][1]["duration_s"] = "fast"
    with pytest.raises(ValueError, match=r"stages\[1\].*key 'duration_s'"):
        DeployRecord.from_dict(data)


def test_from_dict_missing_required_key_names_it() -> None:
    data = full_record().to_dict()
    del data["to_colour"]
    with pytest.raises(ValueError, match="missing key 'to_colour'"):
        DeployRecord.from_dict(data)


def test_from_dict_needs_an_object() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        DeployRecord.from_dict(["id", "x"])


def test_set_stage_replaces_in_place_and_keeps_order() -> None:
    record = DeployRecord(id="x", release="r1", from_colour="blue", to_colour="green")
    record.set_stage("backup", "passed", 1.0)
    record.set_stage("deploy", "failed", 2.0, "image pull timed out")
    record.set_stage("verify", "skipped", 0.0, "deploy failed")
    record.set_stage("deploy", "passed", 3.0)  # the retry
    assert [s.name for s in record.stages] == ["backup", "deploy", "verify"]
    assert record.stage("deploy") == StageRecord("deploy", "passed", 3.0, "")
    assert record.stage("switch") is None


def test_set_stage_refuses_an_unknown_outcome() -> None:
    record = DeployRecord(id="x", release="r1", from_colour="blue", to_colour="green")
    with pytest.raises(ValueError, match="'ok'"):
        record.set_stage("backup", "ok", 1.0)


def test_finish_sets_finished_at_and_duration() -> None:
    record = DeployRecord(
        id="x", release="r1", from_colour="blue", to_colour="green", started_at=utc_timestamp(START)
    )
    record.finish("deployed", now=START + timedelta(seconds=41, milliseconds=200))
    assert record.result == "deployed"
    assert record.finished_at == "2026-11-29T00:15:44.323Z"
    # started_at keeps milliseconds only: 03.123 -> 44.323456.
    assert record.duration_s == pytest.approx(41.200, abs=0.001)
    assert record.error is None


def test_finish_keeps_the_error() -> None:
    record = DeployRecord(id="x", release="r1", from_colour="blue", to_colour="green")
    record.finish("aborted", "backup failed: disk full")
    assert record.result == "aborted"
    assert record.error == "backup failed: disk full"
    assert record.duration_s is not None
    assert record.duration_s >= 0


def test_finish_with_a_clock_stepped_back_gives_no_negative_duration() -> None:
    record = DeployRecord(
        id="x", release="r1", from_colour="blue", to_colour="green", started_at=utc_timestamp(START)
    )
    record.finish("deployed", now=START - timedelta(seconds=5))
    assert record.duration_s == 0.0


def test_finish_refuses_running() -> None:
    record = DeployRecord(id="x", release="r1", from_colour="blue", to_colour="green")
    with pytest.raises(ValueError, match="running"):
        record.finish("running")


def test_new_deploy_id_format() -> None:
    deploy_id = new_deploy_id(START)
    assert re.fullmatch(r"20261129T001503Z-[0-9a-f]{6}", deploy_id)


def test_new_deploy_id_sorts_by_time() -> None:
    moments = [START + timedelta(seconds=s) for s in (0, 1, 59, 3600, 86400 * 40)]
    ids = [new_deploy_id(moment) for moment in moments]
    assert sorted(ids) == ids
    # The suffix does not break the order of different seconds, whatever it is.
    assert sorted(reversed(ids)) == ids


def test_new_deploy_id_is_unique_over_1000_calls() -> None:
    ids = {new_deploy_id(START) for _ in range(1000)}
    assert len(ids) == 1000


# The store


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    return RecordStore(tmp_path / "state")


def test_save_then_load(store: RecordStore) -> None:
    record = full_record()
    path = store.save(record)
    assert path == store.state_dir / "deploys" / f"{record.id}.json"
    assert store.load(record.id) == record
    assert store.last() == record


def test_saved_json_is_indented_with_keys_in_field_order(store: RecordStore) -> None:
    record = full_record()
    text = store.save(record).read_text(encoding="utf-8")
    assert text.startswith('{\n  "id": ')
    assert text.endswith("}\n")
    assert list(json.loads(text)) == list(record.to_dict())
    # Saving twice writes the same bytes: diffs between saves show only what changed.
    store.save(record)
    assert store.path_of(record.id).read_text(encoding="utf-8") == text
    assert store.last_path.read_text(encoding="utf-8") == text


def test_saved_files_are_private(store: RecordStore) -> None:
    path = store.save(full_record())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.last_path.stat().st_mode) == 0o600


def test_save_updates_as_the_deploy_goes(store: RecordStore) -> None:
    record = DeployRecord(id=new_deploy_id(), release="r1", from_colour="blue", to_colour="green")
    store.save(record)
    record.set_stage("backup", "passed", 1.0)
    store.save(record)
    last = store.last()
    assert last is not None
    assert [s.name for s in last.stages] == ["backup"]


def test_save_leaves_no_temporary_files(store: RecordStore) -> None:
    record = full_record()
    for _ in range(3):
        store.save(record)
    assert sorted(p.name for p in store.state_dir.iterdir()) == ["deploys", "last-deploy.json"]
    assert [p.name for p in store.deploys_dir.iterdir()] == [f"{record.id}.json"]


def test_failed_save_keeps_the_old_file_and_no_temporary_file(
    store: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = full_record()
    store.save(record)
    before = store.last_path.read_text(encoding="utf-8")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    record.release = "r43"
    with pytest.raises(OSError, match="No space left"):
        store.save(record)
    monkeypatch.undo()
    assert store.last_path.read_text(encoding="utf-8") == before
    assert [p.name for p in store.deploys_dir.iterdir()] == [f"{record.id}.json"]
    assert sorted(p.name for p in store.state_dir.iterdir()) == ["deploys", "last-deploy.json"]


def test_last_is_none_before_any_deploy(store: RecordStore) -> None:
    assert store.last() is None
    assert store.history() == []


def test_corrupt_last_deploy_names_the_path(store: RecordStore) -> None:
    store.state_dir.mkdir(parents=True)
    store.last_path.write_text('{"id": "x", "release": ', encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(str(store.last_path))):
        store.last()


def test_last_deploy_with_a_wrong_type_names_path_and_key(store: RecordStore) -> None:
    data = full_record().to_dict()
    data["duration_s"] = "long"
    store.state_dir.mkdir(parents=True)
    store.last_path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"last-deploy\.json.*key 'duration_s'"):
        store.last()


def test_load_of_a_missing_deploy_names_the_path(store: RecordStore) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        store.load("20261129T001503Z-000000")
    assert caught.value.filename == str(store.path_of("20261129T001503Z-000000"))
    assert "20261129T001503Z-000000.json" in str(caught.value)


def test_load_refuses_ids_that_are_paths(store: RecordStore) -> None:
    for bad in ("../last-deploy", "a/b", "", ".hidden"):
        with pytest.raises(ValueError, match="not a deploy id"):
            store.load(bad)


def test_load_refuses_a_file_holding_another_deploy(store: RecordStore) -> None:
    store.save(full_record("20261129T001503Z-aaaaaa"))
    store.path_of("20261129T001503Z-aaaaaa").rename(store.path_of("20261129T001503Z-bbbbbb"))
    with pytest.raises(ValueError, match="holds deploy"):
        store.load("20261129T001503Z-bbbbbb")


def test_history_is_newest_first_and_limited(store: RecordStore) -> None:
    ids = [new_deploy_id(START + timedelta(minutes=m)) for m in (5, 0, 30, 10)]
    for deploy_id in ids:
        store.save(full_record(deploy_id))
    newest_first = sorted(ids, reverse=True)
    assert [r.id for r in store.history()] == newest_first
    assert [r.id for r in store.history(limit=2)] == newest_first[:2]
    assert store.history(limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        store.history(limit=-1)


def test_history_skips_files_that_are_not_records(store: RecordStore) -> None:
    store.save(full_record())
    (store.deploys_dir / ".20261129T001503Z-ab12cd.json.x1.tmp").write_text("{", encoding="utf-8")
    (store.deploys_dir / "notes.txt").write_text("hello", encoding="utf-8")
    assert [r.id for r in store.history()] == [full_record().id]


# Masking: the store writes what the secret policy's mask leaves


def mask_secret(secret: str) -> Any:
    """A mask like the policy's: every string at every level, keys too, with ``secret`` -> ***."""

    def mask(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(secret, "***")
        if isinstance(value, dict):
            return {mask(k): mask(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(item) for item in value]
        return value

    return mask


def test_a_store_with_a_mask_writes_no_secret(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "state", mask=mask_secret("s3cr3t-pw"))
    record = full_record()
    record.release = "r42-s3cr3t-pw"
    record.error = "login with s3cr3t-pw refused"
    record.stages[-1].message = "s3cr3t-pw in the output"
    record.logs = {"backend-green": "password=s3cr3t-pw", "s3cr3t-pw": "as a key"}
    path = store.save(record)
    for written in (path, store.last_path):
        assert "s3cr3t-pw" not in written.read_text(encoding="utf-8")
    loaded = store.load(record.id)
    assert (loaded.release, loaded.error) == ("r42-***", "login with *** refused")
    assert loaded.stages[-1].message == "*** in the output"
    assert loaded.logs == {"backend-green": "password=***", "***": "as a key"}
    assert loaded.backup == record.backup  # nothing secret there: as it was
    assert record.error == "login with s3cr3t-pw refused"  # the caller's record is untouched


def test_a_mask_given_to_one_save_wins_over_none(store: RecordStore) -> None:
    record = full_record()
    record.error = "token tok-123456 leaked"
    store.save(record, mask=mask_secret("tok-123456"))
    assert store.load(record.id).error == "token *** leaked"
    store.save(record)  # the store itself has no mask
    assert store.load(record.id).error == "token tok-123456 leaked"


def test_a_secret_inside_an_id_or_a_time_leaves_the_record_readable(store: RecordStore) -> None:
    # A short secret ("2026") that happens to be part of the tool's own values: what a reader
    # checks (id, colours, result, times, stage outcomes) is the tool's own, never masked.
    record = full_record()
    record.release = "release of 2026"
    store.save(record, mask=mask_secret("2026"))
    loaded = store.load(record.id)
    assert loaded.id == record.id
    assert (loaded.started_at, loaded.finished_at) == (record.started_at, record.finished_at)
    assert loaded.release == "release of ***"
    assert [s.outcome for s in loaded.stages] == [s.outcome for s in record.stages]


def test_a_mask_that_breaks_the_record_is_refused_before_writing(store: RecordStore) -> None:
    with pytest.raises(ValueError, match=r"mask made the record unreadable: .*key '"):
        store.save(full_record(), mask=lambda value: "***")
    assert not store.last_path.exists()
