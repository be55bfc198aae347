"""Hooks of a deploy session, for a conftest or a plugin of a team's own.

Added by the plugin's ``pytest_addhooks``. Implement one in a ``conftest.py`` to notify, record
or measure a deploy your own way; the plugin does not depend on any return value. Mark it
``@pytest.hookimpl(optionalhook=True)`` if that conftest also runs with ``-p no:bluegreen``,
where pytest would otherwise refuse a hook it does not know.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_bluegreen.core.colours import Colour
    from pytest_bluegreen.core.record import DeployRecord


@pytest.hookspec
def pytest_bluegreen_stage_ended(
    config: pytest.Config, stage: str, outcome: str, duration_s: float, message: str
) -> None:
    """A stage of a ``--bg-deploy`` session has ended.

    :param config: The pytest config object.
    :param stage: The stage's name, one of ``pytest_bluegreen.stage_tracker.STAGES``
        ("prerequisites", "colours", ..., "retire").
    :param outcome: ``"passed"``, ``"failed"`` or ``"skipped"`` (no test of the stage passed,
        none failed: only ``not_applicable`` ones, say).
    :param duration_s: Seconds from the stage's first test to the end of its last one.
    :param message: For a failed stage, the deploy's error ("stage gates failed: <test id>:
        <reason>"); otherwise the counts of its outcomes ("2 passed, 1 not_applicable").

    Called once for every stage that ran, in deploy order, when the next stage starts or the
    deploy concludes. It is called for the stage that failed too, but not for the later stages,
    which are skipped without running.
    """


@pytest.hookspec
def pytest_bluegreen_traffic_switched(
    config: pytest.Config,
    from_colour: Colour | None,
    to_colour: Colour,
    reason: str,
    record: DeployRecord | None,
) -> None:
    """HAProxy now sends new requests to ``to_colour``.

    :param config: The pytest config object.
    :param from_colour: The colour that was live, None if none was.
    :param to_colour: The colour that is live now.
    :param reason: Why traffic moved: ``"switch"`` (the deploy's switch stage), ``"rollback"``
        (the deploy failed after its switch: back to the old colour), ``"rollback failed"``
        (the old colour did not serve while the new one does: back to the new one),
        ``"manual"`` (``--bg-switch``) or ``"repair"`` (prerequisites found a killed deploy's
        switch that was never verified, and undid it).
    :param record: The deploy's record as it stands (id, release, colours, the stages so far);
        None only when the session knows no deployment.

    Called right after HAProxy's runtime API has taken the change, before the new live colour
    is checked: by the deployment of a ``--bg-deploy`` session, and by ``--bg-switch`` and
    ``--bg-rollback`` (``record`` None for a switch; ``bluegreen <verb>`` runs no pytest hooks).
    """
