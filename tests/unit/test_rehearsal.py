"""The migration rehearsal's own logic: the plan it reads and the errors it reports (no Docker)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import tomllib

from pytest_bluegreen.adapters.testinfra_hosts import service_name
from pytest_bluegreen.checks.rehearsal import error_lines, pending_lines
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.errors import StackError
from tests.unit.reference import REFERENCE

PLAN = """\
[X]  contenttypes.0001_initial
[X]  aptos.0001_initial
[ ]  aptos.0002_builder_website
[ ]  drop_column.0001_drop_builder_founded_year
"""


def test_pending_lines_are_the_non_empty_lines_in_order() -> None:
    assert pending_lines("0003_add_notes\n\n  0004_index \n") == ["0003_add_notes", "0004_index"]
    assert pending_lines("") == []


def test_the_reference_stacks_pending_command_keeps_the_unticked_migrations() -> None:
    """Its shell pipeline, run on Django's plan, prints the pending ones in plan order."""
    settings = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["bluegreen"]
    shell, flag, pipeline = settings["migration_pending_command"]
    sed = pipeline.split("| ", 1)[1]  # the part that reads `showmigrations --plan`
    out = subprocess.run(
        [shell, flag, sed], input=PLAN, capture_output=True, text=True, check=True
    ).stdout
    assert pending_lines(out) == [
        "aptos.0002_builder_website",
        "drop_column.0001_drop_builder_founded_year",
    ]


def test_error_lines_come_out_of_json_tracebacks_once_each() -> None:
    traceback = (
        "Traceback (most recent call last):\\n  File x\\n"
        "psycopg2.errors.UndefinedColumn: column aptos_builder.founded_year does not exist\\n"
        "LINE 1: ...\\n\\ndjango.db.utils.ProgrammingError: column aptos_builder.founded_year "
        'does not exist\\nLINE 1: ..., \\"aptos_builder\\".'
    )
    logs = "\n".join(
        [
            '127.0.0.1 - - "GET /api/v1/health HTTP/1.1" 200 69',
            f'{{"level": "ERROR", "message": "Internal Server Error", "exception": "{traceback}"}}',
            f'{{"level": "ERROR", "message": "Internal Server Error", "exception": "{traceback}"}}',
            "ValueError: plain text traceback line",
        ]
    )
    assert error_lines(logs) == [
        "django.db.utils.ProgrammingError: column aptos_builder.founded_year does not exist",
        "ValueError: plain text traceback line",
    ]
    assert error_lines('127.0.0.1 - - "GET / HTTP/1.1" 200') == []


def test_a_role_names_the_service_of_the_colour_under_test() -> None:
    config = StackConfig(project_dir=Path("/p"), **REFERENCE)
    assert service_name(config, "green", "backend") == "backend-green"
    assert service_name(config, "blue", "frontend") == "frontend-blue"
    assert service_name(config, "blue", "db") == "db"  # any other name is a service as it is
    with pytest.raises(StackError, match="no colour is under test"):
        service_name(config, None, "backend")
