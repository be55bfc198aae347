from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_bluegreen.adapters.routers.haproxy import (
    HAProxyRouter,
    RuntimeAPI,
    parse_show_map,
    parse_show_stat,
    read_map_file,
    write_map_file,
)
from pytest_bluegreen.core.errors import LiveColourChanged, NotReadyError, RouterError
from tests.unit.fake_haproxy import STAT_HEADER, FakeRuntimeAPI
from tests.unit.reference import stack_config

MAP = "/var/lib/bluegreen/active.map"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths are limited to about 100 bytes; tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="bg") as name:
        yield Path(name)


@pytest.fixture
def fake(short_dir: Path) -> Iterator[FakeRuntimeAPI]:
    api = FakeRuntimeAPI(short_dir / "admin.sock", MAP)
    yield api
    api.close()


@pytest.fixture
def router(fake: FakeRuntimeAPI, short_dir: Path) -> HAProxyRouter:
    write_map_file(short_dir / "active.map", "blue")
    config = stack_config(short_dir)
    return HAProxyRouter(
        RuntimeAPI(fake.path), short_dir / "active.map", MAP, config.router.backends_of
    )


def test_parse_show_stat_keeps_server_rows_only() -> None:
    text = "\n".join(
        [
            STAT_HEADER,
            "public_https,FRONTEND,,,3,5,4096,50,,,,,,,,,,OPEN",
            "api_blue,backend-blue,1,2,4,6,,80,,,,,,,,0,0,UP",
            "api_blue,BACKEND,0,0,4,6,410,80,,,,,,,,0,0,UP",
            "web_green,frontend-green,0,0,0,0,,0,,,,,,,,0,0,DOWN",
        ]
    )
    states = parse_show_stat(text)
    assert [(s.backend, s.server, s.status) for s in states] == [
        ("api_blue", "backend-blue", "UP"),
        ("web_green", "frontend-green", "DOWN"),
    ]
    assert states[0].current_sessions == 4
    assert states[0].queued == 1
    assert states[0].up
    assert not states[1].up


def test_parse_show_stat_rejects_an_error_answer() -> None:
    with pytest.raises(RouterError, match="unexpected 'show stat' answer"):
        parse_show_stat("Permission denied.\n")


def test_parse_show_map() -> None:
    assert parse_show_map("0x55d2 active green\n\n") == {"active": "green"}
    with pytest.raises(RouterError, match="unexpected 'show map' line"):
        parse_show_map("Unknown map identifier.\n")


def test_map_file_round_trip_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "active.map"
    write_map_file(path, "green")
    assert path.read_text() == "active green\n"
    assert read_map_file(path) == "green"
    write_map_file(path, "blue")
    assert read_map_file(path) == "blue"
    assert sorted(os.listdir(tmp_path)) == ["active.map"]  # no temporary file left


def test_read_map_file_ignores_garbage(tmp_path: Path) -> None:
    assert read_map_file(tmp_path / "missing.map") is None
    (tmp_path / "bad.map").write_text("active purple\n")
    assert read_map_file(tmp_path / "bad.map") is None


def test_switch_sets_map_persists_and_verifies(
    router: HAProxyRouter, fake: FakeRuntimeAPI, short_dir: Path
) -> None:
    result = router.switch("green")
    assert (result.from_colour, result.to_colour) == ("blue", "green")
    assert fake.colour == "green"
    assert read_map_file(short_dir / "active.map") == "green"
    assert f"set map {MAP} active green" in fake.commands
    assert result.total_ms == pytest.approx(
        result.preflight_ms + result.switch_ms + result.persist_ms + result.verify_ms
    )
    assert router.active_colour() == "green"


def test_a_switch_without_a_preflight_makes_one_first(
    router: HAProxyRouter, fake: FakeRuntimeAPI
) -> None:
    router.switch("green")
    assert fake.lines == [
        f"show map {MAP};show stat -1 4 -1",
        f"set map {MAP} active green;show map {MAP}",
    ]


def test_a_fresh_preflight_leaves_one_round_trip_in_the_switch(
    router: HAProxyRouter, fake: FakeRuntimeAPI
) -> None:
    """The state is read before the command; the command is set map and its read-back."""
    preflight = router.preflight("green")
    assert (preflight.from_colour, preflight.to_colour) == ("blue", "green")
    fake.lines.clear()
    result = router.switch("green", preflight=preflight)
    assert fake.lines == [f"set map {MAP} active green;show map {MAP}"]
    assert result.preflight_ms == preflight.took_ms
    assert result.from_colour == "blue"


def test_a_stale_preflight_is_made_again(
    fake: FakeRuntimeAPI, router: HAProxyRouter, short_dir: Path
) -> None:
    now = [100.0]
    clocked = HAProxyRouter(router.api, router.map_file, MAP, router.backends_of, lambda: now[0])
    preflight = clocked.preflight("green")
    now[0] += 0.6  # older than PREFLIGHT_FRESH_S: HAProxy may have seen a server go down
    fake.status["web_green"] = "DOWN"
    fake.lines.clear()
    with pytest.raises(NotReadyError, match="web_green/frontend-green DOWN"):
        clocked.switch("green", preflight=preflight)
    assert fake.colour == "blue"
    assert fake.lines == [f"show map {MAP};show stat -1 4 -1"]


def test_switch_now_reads_and_switches_in_one_round_trip(
    router: HAProxyRouter, fake: FakeRuntimeAPI, short_dir: Path
) -> None:
    result = router.switch_now("green", expect_from="blue")
    assert fake.lines == [
        f"show map {MAP};show stat -1 4 -1;set map {MAP} active green;show map {MAP}"
    ]
    assert (result.from_colour, result.to_colour) == ("blue", "green")
    assert read_map_file(short_dir / "active.map") == "green"


def test_switch_now_puts_the_live_colour_back_when_the_target_is_not_up(
    router: HAProxyRouter, fake: FakeRuntimeAPI, short_dir: Path
) -> None:
    fake.status["api_green"] = "DOWN"
    with pytest.raises(NotReadyError, match="api_green/backend-green DOWN"):
        router.switch_now("green")
    assert fake.colour == "blue"
    assert fake.lines[1] == f"set map {MAP} active blue"
    assert read_map_file(short_dir / "active.map") == "blue"


def test_switch_now_changes_nothing_when_the_live_colour_is_not_the_expected_one(
    router: HAProxyRouter, fake: FakeRuntimeAPI
) -> None:
    """Two colours: serving another than the expected one is serving the target already."""
    with pytest.raises(LiveColourChanged):
        router.switch_now("blue", expect_from="green")
    assert fake.colour == "blue"


def test_switch_refuses_when_the_live_colour_is_not_the_expected_one(
    router: HAProxyRouter, fake: FakeRuntimeAPI, short_dir: Path
) -> None:
    with pytest.raises(LiveColourChanged, match="HAProxy serves blue, not green") as raised:
        router.switch("blue", expect_from="green")
    assert raised.value.live == "blue"
    assert not any(c.startswith("set map") for c in fake.commands)
    assert read_map_file(short_dir / "active.map") == "blue"


def test_several_commands_answer_in_order(router: HAProxyRouter, fake: FakeRuntimeAPI) -> None:
    answers = router.api.execute_all([f"set map {MAP} active green", "bogus", f"show map {MAP}"])
    assert answers == ["", "Unknown command.", "0x5581 active green"]


def test_switch_refuses_a_colour_that_is_not_up(
    router: HAProxyRouter, fake: FakeRuntimeAPI, short_dir: Path
) -> None:
    fake.status["web_green"] = "DOWN"
    with pytest.raises(
        NotReadyError, match=r"refusing to switch to green: .*web_green/frontend-green"
    ):
        router.switch("green")
    assert fake.colour == "blue"
    assert not any(c.startswith("set map") for c in fake.commands)
    assert read_map_file(short_dir / "active.map") == "blue"


def test_switch_reports_a_refused_set_map(
    router: HAProxyRouter, fake: FakeRuntimeAPI, short_dir: Path
) -> None:
    fake.refuse_set_map = True
    with pytest.raises(RouterError, match="HAProxy refused 'set map': entry not found"):
        router.switch("green")
    assert read_map_file(short_dir / "active.map") == "blue"


def test_wait_ready_times_out_naming_the_servers(
    router: HAProxyRouter, fake: FakeRuntimeAPI
) -> None:
    fake.status["api_blue"] = "DOWN"
    with pytest.raises(
        RouterError, match=r"blue is not UP in HAProxy .*api_blue/backend-blue DOWN"
    ):
        router.wait_ready("blue", timeout_s=0.3)


def test_unknown_backend_is_an_error(fake: FakeRuntimeAPI, short_dir: Path) -> None:
    router = HAProxyRouter(RuntimeAPI(fake.path), short_dir / "m", MAP, lambda c: [f"shop_{c}"])
    with pytest.raises(RouterError, match="no backend named shop_blue"):
        router.servers("blue")


def test_unreachable_socket_says_what_to_check(short_dir: Path) -> None:
    api = RuntimeAPI(short_dir / "nothing.sock")
    with pytest.raises(RouterError, match=r"not reachable at .*is the loadbalancer running"):
        api.execute("show info")


def test_drain_returns_at_once_when_the_colour_has_no_sessions(
    router: HAProxyRouter, fake: FakeRuntimeAPI
) -> None:
    result = router.drain("blue", timeout_s=5)
    assert result.closed_sessions == 0
    assert result.waited_s < 1
    assert not any(c.startswith("shutdown") for c in fake.commands)


def test_drain_closes_the_sessions_still_open_at_its_deadline(
    router: HAProxyRouter, fake: FakeRuntimeAPI
) -> None:
    fake.sessions["api_blue"] = 2  # a WebSocket and a slow upload, say
    fake.sessions["api_green"] = 5  # the other colour's are never touched
    result = router.drain("blue", timeout_s=0.05)
    assert result.closed_sessions == 2
    assert result.waited_s >= 0.05
    assert [c for c in fake.commands if c.startswith("shutdown")] == [
        "shutdown sessions server api_blue/backend-blue"
    ]
    assert fake.sessions == {"api_blue": 0, "web_blue": 0, "api_green": 5, "web_green": 0}


def test_releases_are_written_for_the_next_start_and_told_to_a_running_haproxy(
    router: HAProxyRouter, fake: FakeRuntimeAPI, short_dir: Path
) -> None:
    router.publish_releases({"blue": "r1", "green": "bad release"}, running=False)
    assert (short_dir / "releases.map").read_text() == "blue r1\n"  # no spaces in a map value
    fake.releases = {"blue": "r0"}
    router.publish_releases({"blue": "r1", "green": "v2.0+3"}, running=True)
    assert fake.releases == {"blue": "r1", "green": "v2.0+3"}  # set, then add for a new key
    assert (short_dir / "releases.map").read_text() == "blue r1\ngreen v2.0+3\n"


def test_a_configuration_without_the_releases_map_is_left_alone(
    router: HAProxyRouter, fake: FakeRuntimeAPI
) -> None:
    """The reference app sends its own release header; its HAProxy reads no releases map."""
    router.publish_releases({"green": "r2"}, running=True)
    assert fake.releases is None
