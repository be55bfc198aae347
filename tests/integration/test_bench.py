"""The switch and rollback benches run end to end, tiny, on a stack of their own.

Not a measurement (one short repetition on a busy CI machine): it keeps the scripts working and
their JSON complete, and holds the one figure that must not depend on the machine: our switch,
and the old colour's retirement, fail no request.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.common import bench_config
from bench.switch import EXTRA_LBS
from pytest_bluegreen.adapters.engines.compose import ComposeStack
from tests.images import ThrowawayImages

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROJECT = "bgbenchci"
PORT_BASE = 49000  # 49443 etc.: apart from bgtest (18xxx), bgscen (58xxx) and bgbench (48xxx)


@pytest.fixture(scope="module")
def home(throwaway_images: ThrowawayImages) -> Iterator[Path]:
    """A short folder (HAProxy's socket paths) kept across both scripts: one stack for both."""
    throwaway_images.add(PROJECT)
    path = Path(tempfile.mkdtemp(prefix="bgbci-"))
    yield path
    try:
        ComposeStack(bench_config(PROJECT, path / "work", PORT_BASE)).down(volumes=True)
        for key, *_ in EXTRA_LBS.values():
            subprocess.run(
                ["docker", "rm", "-f", f"{PROJECT}-lb-{key}"],
                capture_output=True,
                timeout=60,
                check=False,
            )
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_bench(script: str, home: Path, *args: str) -> dict[str, Any]:
    out = home / f"{script}.json"
    argv = [sys.executable, str(REPO / "bench" / f"{script}.py"), "--reps", "1"]
    argv += ["--project", PROJECT, "--port-base", str(PORT_BASE)]
    argv += ["--work-dir", str(home / "work"), "--out", str(out), *args]
    result = subprocess.run(
        argv,
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "reproduce with" in result.stdout
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def test_switch_bench(home: Path) -> None:
    data = run_bench(
        "switch",
        home,
        "--keep-stack",
        *("--rate", "60", "--seconds", "8", "--switch-at", "1", "--retire-after", "0.5"),
    )
    medians = {row["mechanism"]: row for row in data["medians"]}
    assert set(medians) == {"none", "runtime-api", "master-worker", "sf", "touch-hup"}
    for row in medians.values():
        assert set(data["columns"]) <= set(row), row
    ours = medians["runtime-api"]
    assert ours["failed_total"] == 0, [r["errors"] for r in data["runs"]]
    assert ours["requests_total"] > 200
    assert ours["effective_ms"] is not None
    assert ours["retire_s"] is not None
    retired = [r for r in data["runs"] if "retire_s" in r]
    assert all(r["retired_before_load_end"] for r in retired), retired
    assert medians["touch-hup"]["never_moved"] == 1  # the design's way reloads nothing
    assert ours["to_set_map_ms"] is not None
    assert medians["none"]["api_round_trip_ms"] > 0
    (line,) = data["scale"]  # one rate: one line
    assert line["rate"] == 60
    assert line["reload_to_new_ms"] == medians["master-worker"]["effective_ms"]
    assert {"cpus", "haproxy", "commit", "date"} <= set(data["machine"])
    assert data["goals"]
    assert data["notes"]


def test_rollback_bench(home: Path) -> None:
    data = run_bench(
        "rollback",
        home,
        *("--rate", "60", "--switch-at", "1", "--verdict-after", "1"),
        *("--hot-seconds", "4", "--retired-seconds", "25", "--retired-for", "2"),
    )
    medians = {row["variant"]: row for row in data["medians"]}
    assert set(medians) == {"hot", "hot-in-deploy", "retired", "retired-before"}
    for row in medians.values():
        assert set(data["columns"]) <= set(row), row
        assert row["back_on_old_ms"] is not None
        assert row["verified_ms"] > 0
    for hot in ("hot", "hot-in-deploy"):
        assert medians[hot]["failed_total"] == 0, [r["errors"] for r in data["runs"]]
        assert medians[hot]["round_trip_ms"] is not None
        assert medians[hot]["switched_ms"] is not None
    assert all(r["load_covered_rollback"] for r in data["runs"])
    goals = " ".join(goal["goal"] for goal in data["goals"])
    assert "3 round trips of the same run" in goals
    assert "0.5x the reference of the same run" in goals
