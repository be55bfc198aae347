"""The load generator's hold and release, with real Locust against a colour on 127.0.0.1.

A deploy launches Locust during the gates: its users must not send a request before the switch
stage releases them, and it must stop on every path, released or not.
"""

from __future__ import annotations

import time
from pathlib import Path

from pytest_bluegreen.adapters.load.locust_runner import LoadRun
from tests.unit.colour_server import serving


def wait_until_ready(run: LoadRun, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not run.ready_file.exists():
        assert time.monotonic() < deadline, "Locust never spawned its users"
        time.sleep(0.05)


def test_launched_users_send_nothing_until_released_then_every_one_sends(tmp_path: Path) -> None:
    with serving() as server:
        run = LoadRun(server.url, tmp_path, None, users=3, user_rps=5, paths=("/",))
        run.launch()
        try:
            wait_until_ready(run)
            time.sleep(0.3)  # held users would have sent a request each by now
            assert run.samples() == []
            run.release()
            samples = run.samples()
            assert len(samples) >= 3
            assert all(s.ok and s.colour == "green" for s in samples)
        finally:
            run.stop()
    assert not run.go_file.exists()


def test_a_run_never_released_stops_without_a_request(tmp_path: Path) -> None:
    with serving() as server:
        run = LoadRun(server.url, tmp_path, None, users=2, paths=("/",))
        run.launch()
        wait_until_ready(run)
        run.stop()
    assert run.samples() == []
    assert "Traceback" not in run.log.with_suffix(".out").read_text()


def test_a_run_held_past_its_hold_is_launched_afresh_at_the_release(tmp_path: Path) -> None:
    with serving() as server:
        run = LoadRun(server.url, tmp_path, None, users=2, paths=("/",), hold_s=0.0)
        run.launch()
        held = run._proc
        try:
            run.release()
            assert run._proc is not held  # the held one would stop at its --run-time
            assert len(run.samples()) >= 2
        finally:
            run.stop()
