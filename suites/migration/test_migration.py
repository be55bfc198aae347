"""Migration rehearsal of the reference stack: the packaged gate ``bluegreen:migration``.

The reference stack's settings give it everything the gate checks: Django's migrate command, its
pending plan and ``makemigrations --check``, and the backend answering its API on port 8000.
The gate's tests are collected here, under this suite's name, in the gate's order (pytest
collects a module's tests in the order its names were bound).
"""

from __future__ import annotations

import pytest

from pytest_bluegreen.gates.migration import test_migration as gate

pytestmark = pytest.mark.bluegreen_stage("migration")

rehearsal = gate.rehearsal
live_on_copy = gate.live_on_copy
test_models_match_migrations = gate.test_models_match_migrations
test_migrations_apply_to_a_copy = gate.test_migrations_apply_to_a_copy
test_live_colour_works_on_the_migrated_copy = gate.test_live_colour_works_on_the_migrated_copy
