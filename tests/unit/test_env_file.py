from __future__ import annotations

import stat
from pathlib import Path

from pytest_bluegreen.adapters.engines.project import ensure_env_file, generated_secrets
from pytest_bluegreen.core.config import read_env_file

EXAMPLE = """# comment stays
POSTGRES_PASSWORD=change-me
DJANGO_SECRET_KEY=change-me
BASE_IMAGE=debian:bookworm-slim
PUBLIC_HTTPS_PORT=443
"""


def test_new_env_file_gets_fresh_secrets_and_given_values(tmp_path: Path) -> None:
    example = tmp_path / ".env.example"
    example.write_text(EXAMPLE)
    target = tmp_path / ".env"
    assert ensure_env_file(target, example, {"BASE_IMAGE": "local/base:1"})
    env = read_env_file(target)
    assert env["BASE_IMAGE"] == "local/base:1"
    assert env["PUBLIC_HTTPS_PORT"] == "443"
    assert len(env["DJANGO_SECRET_KEY"]) >= 50
    assert generated_secrets(example) == [
        "POSTGRES_PASSWORD",
        "DJANGO_SECRET_KEY",
        "STATS_PASSWORD",
    ]
    for key in generated_secrets(example):
        assert env[key] != "change-me"
    assert "# comment stays" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_secrets_differ_between_files(tmp_path: Path) -> None:
    example = tmp_path / "example"
    example.write_text(EXAMPLE)
    ensure_env_file(tmp_path / "a", example, {})
    ensure_env_file(tmp_path / "b", example, {})
    a, b = read_env_file(tmp_path / "a"), read_env_file(tmp_path / "b")
    assert a["POSTGRES_PASSWORD"] != b["POSTGRES_PASSWORD"]


def test_existing_env_file_is_never_touched(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("POSTGRES_PASSWORD=mine\n")
    assert not ensure_env_file(target, tmp_path / "missing-example", {})
    assert target.read_text() == "POSTGRES_PASSWORD=mine\n"


def test_without_an_example_the_routers_password_is_still_generated(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    ensure_env_file(target, tmp_path / "missing-example", {})
    assert set(read_env_file(target)) == {"STATS_PASSWORD"}
