"""Users' load across the switch, watched: live lines, the first failures, the final figures.

Launched held at the end of bring_up (its start-up overlaps the gates, which it does not load),
released for the window before the switch; it runs to the end of the deploy (verify, bake,
retire) or through a rollback and a second after it, so the record's figures cover everything
users saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pytest_bluegreen.core import load_figures as loads
from pytest_bluegreen.core.errors import DeployError
from pytest_bluegreen.core.ports import LoadGenerator

POLL_S = 0.1


class LoadWatch:
    """One load generator's run, split at the switch."""

    def __init__(
        self, generator: LoadGenerator, failure_budget: int, progress: Callable[[str], None]
    ) -> None:
        self.generator = generator
        self.failure_budget = failure_budget
        self.progress = progress
        self.switched_at: float | None = None  # epoch seconds
        self.stopped = False

    def launch(self) -> None:
        """The generator started and its users held: no request yet."""
        self.generator.launch()

    def release(self) -> None:
        """The users send from now on; returns once requests flow."""
        self.generator.release()

    def watch(self, until: float, when: str) -> None:
        """Load until ``until`` (epoch), a live line each second; after the switch, cut short.

        Cut short by the first failures over budget: every request that fails after the switch
        is a user's, so the verdict, and the rollback, come at once, not at the window's end.
        """
        next_line = time.time() + 1
        while (now := time.time()) < until:
            if self.failed_since_switch() > self.failure_budget:
                return
            if now >= next_line:
                second = loads.last_second(self.generator.samples(), now)
                self.progress(
                    f"load {when}: {second.requests} req/s, {second.failures} failed, "
                    f"p99 {second.p99_ms:.0f} ms"
                )
                next_line += 1
            time.sleep(POLL_S)

    def failed_since_switch(self) -> int:
        """Users' requests that started after the switch and failed (0 before it)."""
        if self.switched_at is None:
            return 0
        return loads.failed_since(self.generator.samples(), self.switched_at)

    def figures(self, old_colour: str, rollback_at: float | None = None) -> loads.LoadFigures:
        """The figures so far, split at the switch; ``after`` ends at a rollback."""
        if self.switched_at is None:
            raise DeployError("the load has no switch to split its figures at")
        return loads.figures(self.generator.samples(), self.switched_at, old_colour, rollback_at)

    def stop(
        self, old_colour: str | None, rollback_at: float | None = None
    ) -> loads.LoadFigures | None:
        """Stop the load; its figures over the whole run, None without a switch or a request.

        After a rollback it runs on for a second of the old colour serving again, for the record.
        """
        if self.stopped:
            return None
        if rollback_at is not None:
            time.sleep(max(0.0, rollback_at + 1.0 - time.time()))
        self.generator.stop()
        self.stopped = True
        if self.switched_at is None or old_colour is None:
            return None
        try:
            return self.figures(old_colour, rollback_at)
        except DeployError:  # no request recorded
            return None
