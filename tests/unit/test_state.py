from __future__ import annotations

from pathlib import Path

import pytest

from pytest_bluegreen.core.errors import ConfigError
from pytest_bluegreen.core.state import ColourState, load_state, save_state


def test_round_trip_and_release_env(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert load_state(path) == ColourState()
    save_state(path, ColourState("green", {"green": "r2", "blue": "r1"}, "d9", {"blue"}))
    state = load_state(path)
    assert state == ColourState("green", {"blue": "r1", "green": "r2"}, "d9", {"blue"})
    assert state.release_env() == {"BLUE_RELEASE": "r1", "GREEN_RELEASE": "r2"}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_unknown_colours_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(
        '{"live": "purple", "releases": {"purple": "x", "blue": "r1"}, "retired": ["red", "blue"]}'
    )
    assert load_state(path) == ColourState(None, {"blue": "r1"}, None, {"blue"})


def test_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is not a valid state file"):
        load_state(path)
