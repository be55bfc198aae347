"""One deployment: the work of each stage, and the decision at its end (done, abort, roll back).

The pytest stage items call the stage methods in order; the session fixture's finalizer calls
:meth:`Deployment.conclude`. Everything outside is reached through :mod:`.ports`, so every
decision here is unit-tested with fakes (``tests/unit/test_deployment.py``).
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_bluegreen.core import bake as baking
from pytest_bluegreen.core import load_figures as loads
from pytest_bluegreen.core.colours import Colour, other_colour
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.ending import failed_logs, tell_end
from pytest_bluegreen.core.errors import BluegreenError, DeployError
from pytest_bluegreen.core.load_watch import LoadWatch
from pytest_bluegreen.core.lock import DeployLock, LockHolder
from pytest_bluegreen.core.ports import (
    Adapters,
    DeployObserver,
    NoObserver,
    NotificationKind,
    Outputs,
    Progress,
    Rehearsal,
    Stack,
)
from pytest_bluegreen.core.record import DeployRecord, RecordStore, new_deploy_id, utc_timestamp
from pytest_bluegreen.core.rollback import DEPLOY_ROLLBACK, Rollback, RollbackResult
from pytest_bluegreen.core.state import ColourState, load_state, save_state

RECORD_SAVE_EVERY_S = 1.0  # while a stage's tests pass: its counts saved at most this often


class Phase(enum.Enum):
    """How far a deploy got, which decides how it ends when a stage fails."""

    UNTOUCHED = "untouched"  # nothing changed yet: ending is only unlocking
    IDLE_CHANGED = "idle_changed"  # the idle colour was built or started: abort stops it
    SWITCHED = "switched"  # users are on the new colour: a failure rolls back
    CONCLUDED = "concluded"


class Deployment:
    """Deploy ``release`` to the idle colour of the stack described by ``config``."""

    def __init__(
        self,
        config: StackConfig,
        release: str,
        adapters: Adapters,
        outputs: Outputs,
        progress: Progress = lambda message: None,
        clock: Callable[[], float] = time.monotonic,
        deploy_id: str | None = None,
        observer: DeployObserver | None = None,
    ) -> None:
        self.config = config
        self.release = release
        self.adapters = adapters
        self.outputs = outputs
        self.progress = progress
        self.clock = clock
        self.observer: DeployObserver = observer or NoObserver()
        self.id = deploy_id or new_deploy_id()
        self.record = DeployRecord(id=self.id, release=release, from_colour=None, to_colour=None)
        self.record.started_at = utc_timestamp()
        self.records = RecordStore(config.state_dir, mask=outputs.mask_json)
        self.lock = DeployLock(config.lock_file)
        self.state = ColourState()
        self.phase = Phase.UNTOUCHED
        self.router_running = False
        self._stack: Stack | None = None
        self.services: list[str] = []  # the stack's, once prerequisites have read them
        self.backup_file: Path | None = None
        self._rehearsal: Rehearsal | None = None
        self._dropping: threading.Thread | None = None  # the rehearsal's removal, aside
        self._drop_failure: BaseException | None = None
        self.load: LoadWatch | None = None  # launched at bring_up's end, released at the switch
        self._saved_at = float("-inf")  # the record's last save by stage_done (clock)

    # -- what the stages and fixtures read -----------------------------------------------------

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            raise DeployError("the prerequisites stage has not run")
        return self._stack

    @property
    def from_colour(self) -> Colour | None:
        return self.record.from_colour

    @property
    def to_colour(self) -> Colour:
        if self.record.to_colour is None:
            raise DeployError("the colours stage has not run")
        return self.record.to_colour

    @property
    def switched(self) -> bool:
        return self.phase is Phase.SWITCHED

    @property
    def concluded(self) -> bool:
        return self.phase is Phase.CONCLUDED

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.outputs.secrets

    def say(self, event: str, message: str, **fields: Any) -> None:
        self.progress(self.outputs.mask(message))
        self.outputs.emit(event, message=message, **fields)

    def _release_env(self) -> None:
        """Every stack command sees each colour's recorded release (no accidental retag)."""
        self.stack.release_env = self.state.release_env()

    # -- stages --------------------------------------------------------------------------------

    def prerequisites(self) -> None:
        """The engine, the stack's files, the lock, free ports, the shared images, the router.

        The shared services' images are built here when missing (a new machine): the backup
        needs the database before the build stage runs.
        """
        self.outputs.emit("deploy.start", release=self.release)
        self._stack = self.adapters.open_stack()
        stale = self.lock.acquire(self.id, self.record.started_at)
        self.records.save(self.record)
        self._notify("start")
        self.state = load_state(self.config.state_file)
        self._release_env()
        self.stack.prepare()
        self.outputs.refresh_secrets()  # a first deploy has just written the env file
        self.services = self.stack.read_services()  # validates the stack's files too
        self.stack.check_ports_free()
        built = self.stack.build_missing_shared()
        if built:
            self.say("prerequisites.built", f"built {', '.join(built)}", services=built)
        self._start_absent_shared()
        lb = self.config.services.loadbalancer
        self.router_running = bool(self.stack.running_services([lb]))
        if self.router_running:
            self.adapters.router.active_colour()  # raises when the runtime API does not answer
        elif self.state.live is not None:
            raise DeployError(
                f"the loadbalancer is not running, but {self.state.live} was live: start the "
                "stack first (bluegreen up), a deploy never starts with traffic down"
            )
        if stale is not None:
            self.repair(stale)

    def _start_absent_shared(self) -> None:
        """Start what both colours use (a cache, a queue) when it is not running; never restart it.

        The database starts when the backup needs it, the loadbalancer with the first colour.
        """
        own = (
            self.config.database.service if self.config.has_database else "",
            self.config.services.loadbalancer,
        )
        shared = [s for s in self.stack.shared_services() if s not in own]
        running = set(self.stack.running_services(shared))
        absent = [s for s in shared if s not in running]
        if absent:
            self.say("prerequisites.started", f"starting {', '.join(absent)}", services=absent)
            self.stack.start(absent)

    def repair(self, stale: LockHolder) -> None:
        """A deploy was killed: close its record and put traffic back where it was verified."""
        self.say(
            "deploy.repair", f"deploy {stale.deploy_id} (pid {stale.pid}) was killed; repairing"
        )
        try:
            killed = self.records.load(stale.deploy_id)
        except (FileNotFoundError, ValueError):
            killed = None
        if killed is not None and killed.result == "running":
            killed.finish(
                "interrupted", error="the deploy process was killed; repaired by " + self.id
            )
            self.records.save(killed)
        if not self.router_running or self.state.live is None:
            return
        router = self.adapters.router
        live = router.active_colour()
        if live != self.state.live:
            self.say(
                "deploy.repair.switch",
                f"HAProxy serves {live}, never verified; switching back to {self.state.live}",
            )
            router.wait_ready(self.state.live, timeout_s=30)
            router.switch(self.state.live)
            self.observer.traffic_switched(live, self.state.live, "repair")

    def colours(self) -> None:
        """The live colour as the router holds it, cross-checked with the recorded state."""
        live = self.adapters.router.active_colour() if self.router_running else None
        if live is not None and self.state.live not in (None, live):
            self.say(
                "colours.mismatch",
                f"HAProxy serves {live}, the state file says {self.state.live}: trusting HAProxy",
                level="warning",
            )
        self.record.from_colour = live
        self.record.to_colour = other_colour(live) if live else "blue"
        if live is None:
            self.say("colours", f"empty host: first deploy, to {self.to_colour}")
        else:
            old = self.state.releases.get(live, "unknown")
            self.say(
                "colours", f"live: {live} ({old}); deploying {self.release} to {self.to_colour}"
            )

    def backup(self) -> None:
        """A verified, compressed, rotated dump of the database before anything changes.

        Not called for a stack without a database (the stage is not applicable there).
        """
        result = self.adapters.database().backup(f"{self.id}-{self.release}")
        self.backup_file = result.path
        self.record.backup = {
            "file": str(result.path),
            "sha256": result.sha256,
            "size_bytes": result.size_bytes,
            "row_counts": result.row_counts,
            "dump_s": round(result.dump_s, 3),
            "verify_s": round(result.verify_s, 3),
        }
        rows = sum(result.row_counts.values())
        self.say(
            "backup", f"backup {result.path.name}: {result.size_bytes} bytes, {rows} rows verified"
        )

    def build(self) -> None:
        """Build the idle colour's images at the release, workers' too (nothing starts yet)."""
        to = self.to_colour
        services = list(self.config.services.release_services_of(to))
        self.state.releases[to] = self.release
        self._release_env()
        self.say("build", f"building {', '.join(services)} at {self.release}")
        self.phase = Phase.IDLE_CHANGED
        self.stack.build(services)

    def rehearsal(self) -> Rehearsal:
        """The migration rehearsal on a scratch copy of the backup, made once per deploy."""
        if self._rehearsal is None:
            if self.backup_file is None:
                raise DeployError("the backup stage has not run: there is nothing to rehearse on")
            rehearsal = self.adapters.rehearsal(self.backup_file, self.to_colour, self.from_colour)
            self.say(
                "migration",
                f"restoring the backup into the scratch server {rehearsal.scratch} to rehearse on",
            )
            rehearsal.prepare()
            self._rehearsal = rehearsal
        return self._rehearsal

    def _end_rehearsal(self, *, wait: bool = True) -> None:
        """The scratch copy and the tools container go once the rehearsal is over.

        Removed on a thread of its own: bring_up goes on with the real migration meanwhile
        (``wait=False``, about half a second of Docker removing containers and a network that
        nothing waits for); any later call waits for the removal to end.
        """
        if self._rehearsal is not None:
            self.record.migration = self._rehearsal.summary()
            rehearsal, self._rehearsal = self._rehearsal, None
            self._dropping = threading.Thread(
                target=self._drop, args=(rehearsal,), name="bluegreen-rehearsal-drop"
            )
            self._dropping.start()
        if wait and self._dropping is not None:
            self._dropping.join()
            self._dropping = None
            failure, self._drop_failure = self._drop_failure, None
            if failure is not None:
                raise failure

    def _drop(self, rehearsal: Rehearsal) -> None:
        try:
            rehearsal.drop()
        except BaseException as exc:  # raised where the removal is waited for
            self._drop_failure = exc

    def bring_up(self) -> None:
        """Migrate the real database, start the idle colour, wait until it is healthy and UP.

        The migration gate (a rehearsal on a copy) has passed when this runs. Its end launches
        the users' load, held until the switch stage, so that its start-up overlaps the gates.
        """
        self._end_rehearsal(wait=False)
        to = self.to_colour
        services = list(self.config.services.services_of(to))
        if self.config.services.workers_start == "with_colour":
            services += self.config.services.workers_of(to)
        migrating = "migrating, then " if self.config.has_migrations else ""
        self.say("bring_up", f"{migrating}starting {', '.join(services)} at {self.release}")
        start = self.clock()
        if self.config.has_migrations:
            self.stack.migrate(to, seed=self.from_colour is None)
        migrated = self.clock()
        self.stack.recreate(services)
        self.state.retired.discard(to)
        self.stack.wait_healthy(services, self.config.engine.healthy_timeout_s)
        self.adapters.router.publish_releases(self.state.releases, running=self.router_running)
        if not self.router_running:
            self.stack.start_router(to)
            self.router_running = True
        self.adapters.router.wait_ready(to, timeout_s=60)
        self.say(
            "bring_up.healthy",
            f"{to} at {self.release} is healthy and UP in HAProxy",
            migrate_s=round(migrated - start, 3),
            start_to_healthy_s=round(self.clock() - migrated, 3),  # the app's own start-up
        )
        self._end_rehearsal()
        self._launch_load()

    def switch(self, gates_passed: int) -> None:
        """Move new requests to the new colour through the router, under load."""
        if gates_passed == 0:
            raise DeployError("no gate test ran: a deploy never passes because a check did not run")
        to = self.to_colour
        if self.from_colour is None:
            # First deploy: the router started with the new colour already in its map.
            self.phase = Phase.SWITCHED
            save_state(self.config.state_file, self.state)
            self._start_workers()
            return
        cfg = self.config
        self._launch_load()  # done at bring_up's end; here when that did not run
        load = self.load
        waited: dict[str, float] = {}  # the load windows as waited, for the event log
        if load is not None:
            load.release()
            window = self.clock()
            load.watch(time.time() + cfg.load.window_s, "before the switch")
            waited["load_window_before_s"] = round(self.clock() - window, 3)
        result = self.adapters.router.switch(to)
        switched_at = time.time()
        self.phase = Phase.SWITCHED
        if load is not None:
            load.switched_at = switched_at
        self.observer.traffic_switched(result.from_colour, to, "switch")
        if load is not None:
            window = self.clock()
            load.watch(switched_at + cfg.load.window_s, "after the switch")
            waited["load_window_after_s"] = round(self.clock() - window, 3)
        self.record.switch = {
            k: round(v, 3) if isinstance(v, float) else list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(result).items()
            if v != ()  # replicas: on a cluster only
        }
        self.record.switch["total_ms"] = round(result.total_ms, 3)
        self.say(
            "switch", f"switched {result.from_colour} -> {to} in {result.total_ms:.1f} ms", **waited
        )
        # The recorded live colour changes only once the deploy is verified (see conclude): a
        # deploy killed after its switch leaves the router and the record apart, which is how
        # the next run knows to switch back.
        save_state(cfg.state_file, self.state)
        if load is not None:  # it runs on through verify, bake and retire (or the rollback)
            self._judge_load(load.figures(result.from_colour))
        self._start_workers()

    def _start_workers(self) -> None:
        """The new colour's workers, once it has the traffic: never jobs before the gates passed.

        The old colour's workers stop at retire, each in its own stop_grace_period.
        """
        workers = list(self.config.services.workers_of(self.to_colour))
        if not workers or self.config.services.workers_start != "after_switch":
            return
        self.say("workers", f"starting {', '.join(workers)} at {self.release}")
        self.stack.recreate(workers)
        self.stack.wait_healthy(workers, self.config.engine.healthy_timeout_s)

    def _launch_load(self) -> None:
        """Users readied (a process, its imports, its users) but held: the switch releases them.

        Once released it runs through verify, bake and retire, and stops by itself at last; it is
        stopped on every end of the deploy (see conclude). No users, or a first deploy (no
        traffic to switch): no load.
        """
        cfg = self.config
        if self.load is not None or self.from_colour is None or not cfg.load.users:
            return
        seconds = 2 * cfg.load.window_s + cfg.gates.bake_s + cfg.retire.drain_timeout_s + 120
        self.load = LoadWatch(self.adapters.load(seconds), cfg.load.failure_budget, self.progress)
        self.load.launch()

    def _failed_since_switch(self) -> int:
        """Users' requests that started after the switch and failed (0 without load)."""
        return 0 if self.load is None else self.load.failed_since_switch()

    def _stop_load(self, rollback_at: float | None = None) -> None:
        """Stop the load and record its figures over the whole run (switch to the end)."""
        if self.load is None:
            return
        figures = self.load.stop(self.from_colour, rollback_at)
        if figures is None:
            return
        self.record.load = figures.to_dict()
        self.outputs.emit(
            "load.final", **{k: v for k, v in self.record.load.items() if k != "series"}
        )

    def _judge_load(self, load: loads.LoadFigures) -> None:
        """Failed requests and the p99 overhead of the switch, against their budgets."""
        cfg = self.config
        self.record.load = load.to_dict()
        self.say(
            "load",
            f"load: {load.total.requests} requests, {load.total.failures} failed; p99 "
            f"{load.before.p99_ms:.1f} ms before, {load.first_second.p99_ms:.1f} ms in the second "
            f"after the switch; {load.old_colour_after_switch} answered by the old colour after it",
        )
        problems = loads.verdict(load, cfg.load.failure_budget, cfg.load.p99_budget_ms)
        if problems:
            raise DeployError("under load: " + "; ".join(problems))

    def bake(self) -> None:
        """Watch the new colour for ``bake_s`` before the old one goes: a failure rolls back."""
        to, seconds = self.to_colour, self.config.gates.bake_s
        if seconds == 0:
            return
        baking.bake(
            self.stack,
            self.adapters.router,
            to,
            self.config.services.services_of(to),
            seconds,
            self._failed_since_switch,
            self.config.load.failure_budget,
            clock=self.clock,
        )
        self.say("bake", f"{to} stayed up and healthy for {seconds:g}s")

    def retire(self) -> None:
        """Drain the old colour, then stop it (now, or after the configured delay)."""
        old = self.from_colour
        if old is None:
            return
        drain = self.adapters.router.drain(old, self.config.retire.drain_timeout_s)
        drained = f"{old} drained in {drain.waited_s:.2f}s"
        if drain.closed_sessions:  # long-lived connections: cut, never a reason to roll back
            drained += f", then closed its {drain.closed_sessions} sessions still open"
            self.say(
                "retire.sessions_closed",
                f"{old} still had {drain.closed_sessions} open sessions after "
                f"retire.drain_timeout_s ({self.config.retire.drain_timeout_s:g}s): closed them",
                level="warning",
                closed_sessions=drain.closed_sessions,
            )
        delay = self.config.retire.delay_s
        if delay == 0:
            self.state.retired.add(old)  # before the stop: a rollback then starts it first
            save_state(self.config.state_file, self.state)
            self.stack.stop(self._colour_containers(old))
            self.say("retire", f"{drained} and stopped (containers kept)")
            return
        self.stack.schedule_retire(old, delay)
        self.say("retire", f"{drained}; stops in {delay:.0f}s unless rolled back")

    def stage_done(self, name: str, outcome: str, duration_s: float, message: str = "") -> None:
        """Record a stage's outcome; saved at once, so a killed deploy leaves its trace.

        Called three times a test (setup, call, teardown). A save is two fsync'd files: when
        only a stage's counts and duration grew (its tests passing), at most one a second.
        """
        before = next((s.outcome for s in self.record.stages if s.name == name), None)
        self.record.set_stage(name, outcome, round(duration_s, 3), message)
        if self._rehearsal is not None:
            self.record.migration = self._rehearsal.summary()
        self.outputs.emit(
            "stage", stage=name, outcome=outcome, duration_s=duration_s, message=message
        )
        now = self.clock()
        if self.lock.held and (before != outcome or now - self._saved_at >= RECORD_SAVE_EVERY_S):
            self.records.save(self.record)
            self._saved_at = now

    # -- the end -------------------------------------------------------------------------------

    def conclude(
        self, failed_stage: str | None, error: str | None, verdict_at: float | None
    ) -> None:
        """Finish the deploy: done, aborted or rolled back; record, notify, unlock."""
        phase, self.phase = self.phase, Phase.CONCLUDED
        self._end_rehearsal()
        try:
            failed = failed_stage is not None or error is not None
            if failed and phase is Phase.SWITCHED and self.from_colour is not None:
                self.rollback(verdict_at or self.clock(), error)
            else:
                self._end_without_rollback(phase, failed_stage, error)
        finally:
            self.outputs.close()
            self.lock.release()

    def _end_without_rollback(
        self, phase: Phase, failed_stage: str | None, error: str | None
    ) -> None:
        """Deployed, aborted, or a first deploy that failed after its switch: ended and told."""
        switched = phase is Phase.SWITCHED
        try:
            if failed_stage is None and error is None:
                self._stop_load()
                self.state.live, self.state.last_deploy = self.to_colour, self.id
                save_state(self.config.state_file, self.state)
                self.record.finish("deployed")
            elif switched:
                raise DeployError(
                    "the first deploy failed after its switch: there is no colour to roll back to"
                )
            else:
                self.abort(phase)
                self.record.finish("aborted", error=error)
        except BluegreenError as exc:
            problem = f"{error}; then: {exc}" if error else str(exc)
            self.record.finish("rolled_back" if switched else "aborted", error=problem)
            raise
        finally:
            self._settle()
            tell_end(self.record, self.records, self.outputs, self._warn)

    def _settle(self, rollback_at: float | None = None) -> None:
        """The deploy's last words in its record before it is saved, however it ended."""
        self._stop_load(rollback_at)
        self._record_placement()
        self._prune_images()

    def _record_placement(self) -> None:
        """Which host (a swarm's node) runs each service now, for the record and the report."""
        if not self.services:
            return
        try:
            placement = self.stack.placement(self.services)
        except Exception as exc:  # a record without it is still the record
            self.say("placement.failed", f"placement not recorded: {exc}", level="warning")
            return
        self.record.placement = {s: hosts for s, hosts in placement.items() if hosts}

    def _prune_images(self) -> None:
        """Old release images go: the newest ``keep_releases``, live and previous stay."""
        if not self.services:  # the stack was never read: nothing of ours to prune
            return
        try:
            removed = self.stack.prune_release_images(
                self.config.engine.keep_releases, self.state.releases.values()
            )
        except Exception as exc:  # disk hygiene must never fail a deploy
            self.say("images.failed", f"old release images not removed: {exc}", level="warning")
            return
        if removed:
            self.say("images.pruned", f"removed old release images: {', '.join(removed)}")

    def abort(self, phase: Phase) -> None:
        """Before the switch: stop what this deploy started; live traffic was never touched."""
        if phase is Phase.UNTOUCHED or self.from_colour is None:
            return
        services = self._colour_containers(self.to_colour)
        self.say("abort", f"stopping {', '.join(services)}; {self.from_colour} still serves")
        # Its containers now hold the aborted release: never again a rollback target.
        self.state.releases.pop(self.to_colour, None)
        self.state.retired.add(self.to_colour)
        save_state(self.config.state_file, self.state)
        self.record.logs = failed_logs(self.stack, services, self.outputs.mask)
        self.stack.stop(services)

    def rollback(self, verdict_at: float, error: str | None = None) -> None:
        """After the switch: the one rollback, with a deploy's policy; it ends the record.

        Traffic goes back to the old colour at once, then it is proven to serve; the failed
        colour is stopped afterwards, its containers and last log lines kept.
        """
        rollback = Rollback(
            self.config,
            self.adapters,
            lambda: self.outputs,
            self.lock,
            observer=self.observer,
            progress=self.progress,
            clock=self.clock,
        )

        def settle(result: RollbackResult | None) -> None:
            self._settle(result.switched_at if result is not None and result.verified else None)

        rollback.run(
            self.record,
            self.state,
            self.to_colour,
            verdict_at,
            DEPLOY_ROLLBACK,
            error=error,
            settle=settle,
        )

    def _colour_containers(self, colour: Colour) -> list[str]:
        """A colour's services and workers: what abort, rollback and retire stop."""
        return list(self.config.services.release_services_of(colour))

    def _notify(self, kind: NotificationKind) -> None:
        for failure in self.outputs.notify(kind, self.record):
            self._warn("notify.failed", failure)

    def _warn(self, event: str, message: str) -> None:
        self.say(event, message, level="warning")
