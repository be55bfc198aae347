"""The built-in stages of ``pytest --bg-deploy``, one test item each, in deploy order.

Collected only in a deploy session (the plugin adds this file to the run). The migration and
gates stages are the gate suites' own tests; the verify stage is the post-deploy suite's.
"""

from __future__ import annotations

import pytest

from pytest_bluegreen.core.deployment import Deployment
from pytest_bluegreen.stage_tracker import StageTracker, not_applicable


@pytest.mark.bluegreen_stage("prerequisites")
def test_prerequisites(bluegreen_deployment: Deployment) -> None:
    """Docker answers, the Compose file is valid, no other deploy runs, ports free, images there."""
    bluegreen_deployment.prerequisites()


@pytest.mark.bluegreen_stage("colours")
def test_colours(bluegreen_deployment: Deployment) -> None:
    """The live colour, read from HAProxy; the idle colour is the other one."""
    bluegreen_deployment.colours()


@pytest.mark.bluegreen_stage("backup")
def test_backup(bluegreen_deployment: Deployment) -> None:
    """A compressed, checksummed database dump, verified by a restore, before any change."""
    if not bluegreen_deployment.config.has_database:
        not_applicable("the stack has no database (bluegreen.database.kind = 'none')")
    bluegreen_deployment.backup()


@pytest.mark.bluegreen_stage("build")
def test_build(bluegreen_deployment: Deployment) -> None:
    """The idle colour's images at the new release; the migration gate runs on them next."""
    bluegreen_deployment.build()


@pytest.mark.bluegreen_stage("bring_up")
def test_bring_up(bluegreen_deployment: Deployment) -> None:
    """The real database migrated, the idle colour healthy for Docker and UP for HAProxy."""
    bluegreen_deployment.bring_up()


@pytest.mark.bluegreen_stage("switch")
def test_switch(bluegreen_deployment: Deployment, bluegreen_stage_tracker: StageTracker) -> None:
    """New requests go to the new colour, through HAProxy's runtime API, without a reload."""
    bluegreen_deployment.switch(gates_passed=bluegreen_stage_tracker.gates_passed())


@pytest.mark.bluegreen_stage("bake")
def test_bake(bluegreen_deployment: Deployment) -> None:
    """The new colour stays up, healthy and UP for a while, with the old one still running."""
    bluegreen_deployment.bake()


@pytest.mark.bluegreen_stage("retire")
def test_retire(bluegreen_deployment: Deployment) -> None:
    """The old colour drained, then stopped; its containers are kept for a fast rollback."""
    bluegreen_deployment.retire()
