"""One deployment: the work of each stage, the abort and the rollback, and the record of it all.

The pytest stage items call these methods in order; the session fixture's finalizer calls
:meth:`Deployment.conclude`, which decides between done, abort (failed before the switch: live
traffic never touched) and rollback (failed after it: traffic back to the old colour, verified).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_bluegreen.adapters.compose import ServiceSpec
from pytest_bluegreen.adapters.haproxy import write_map_file
from pytest_bluegreen.adapters.locust_load import LoadRun
from pytest_bluegreen.adapters.postgres import DatabaseBackup
from pytest_bluegreen.adapters.stack import Progress, Stack
from pytest_bluegreen.checks.probe import check_colour_serves
from pytest_bluegreen.checks.rehearsal import MigrationRehearsal
from pytest_bluegreen.core.colours import Colour, other_colour
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.errors import BluegreenError, DeployError
from pytest_bluegreen.core.load import LoadFigures, figures, last_second
from pytest_bluegreen.core.lock import DeployLock, LockHolder
from pytest_bluegreen.core.record import DeployRecord, RecordStore, new_deploy_id, utc_timestamp
from pytest_bluegreen.core.state import ColourState, load_state, save_state
from pytest_bluegreen.reporting import metrics
from pytest_bluegreen.reporting.events import EventLog
from pytest_bluegreen.reporting.notify import NotificationKind, Notifier
from pytest_bluegreen.reporting.secrets import redact, secret_values


class Deployment:
    """Deploy ``release`` to the idle colour of the stack described by ``config``."""

    def __init__(
        self,
        config: StackConfig,
        release: str,
        progress: Progress = lambda message: None,
        clock: Callable[[], float] = time.monotonic,
        deploy_id: str | None = None,
    ) -> None:
        self.config = config
        self.release = release
        self.progress = progress
        self.clock = clock
        self.id = deploy_id or new_deploy_id()
        self.started = clock()
        self.record = DeployRecord(id=self.id, release=release, from_colour=None, to_colour=None)
        self.record.started_at = utc_timestamp()
        self.records = RecordStore(config.state_dir)
        self.lock = DeployLock(config.lock_file)
        self.state = ColourState()
        self.secrets: tuple[str, ...] = ()
        self.events = EventLog(config.log_file, self.id)
        self.notifier = Notifier(
            config.webhooks, style="slack" if config.webhook_style == "slack" else "json"
        )
        self._mask_stack_secrets()
        self._stack: Stack | None = None
        self.services: dict[str, ServiceSpec] = {}  # as Compose resolves them, from prerequisites
        self.backup_file: Path | None = None
        self._rehearsal: MigrationRehearsal | None = None
        self.lb_running = False
        self.load: LoadRun | None = None  # from the switch to the end of the deploy
        self.switched_at: float | None = None  # epoch seconds
        self.brought_up = False
        self.switched = False
        self.concluded = False

    # -- helpers -------------------------------------------------------------------------------

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

    def _mask_stack_secrets(self) -> None:
        """Every secret-looking variable of the stack's environment, masked in every output.

        Read again once prerequisites have made the env file (a first deploy writes it).
        """
        self.secrets = secret_values(self.config.environment, self.secrets)
        self.events.secrets = self.notifier.secrets = self.secrets

    def say(self, event: str, message: str, **fields: Any) -> None:
        self.progress(redact(message, self.secrets))
        self.events.emit(event, message=message, **fields)

    def _release_env(self) -> None:
        """Every Compose command sees each colour's recorded release (no accidental retag)."""
        self.stack.release_env = self.state.release_env()

    # -- stages --------------------------------------------------------------------------------

    def prerequisites(self) -> None:
        """Docker, Compose file, the lock, free ports, the shared services' images, HAProxy's API.

        The shared services' images are built here when missing (a new machine): the backup
        needs the database before the build stage runs.
        """
        self.events.emit("deploy.start", release=self.release)
        self._stack = Stack(self.config, progress=self.progress)
        stale = self.lock.acquire(self.id, self.record.started_at)
        self.records.save(self.record)
        self.notifier_send("start")
        self.state = load_state(self.config.state_file)
        self._release_env()
        self.stack.prepare()
        self._mask_stack_secrets()
        self.services = self.stack.compose.services()  # validates the Compose files too
        self.stack.check_ports_free(self.services)
        built = self.stack.build_missing(self.services, self.stack.shared_services(self.services))
        if built:
            self.say("prerequisites.built", f"built {', '.join(built)}", services=built)
        self.lb_running = bool(self.stack.running_services([self.config.loadbalancer_service]))
        if self.lb_running:
            self.stack.router.active_colour()  # raises when the runtime API does not answer
        elif self.state.live is not None:
            raise DeployError(
                f"the loadbalancer is not running, but {self.state.live} was live: start the "
                "stack first (bluegreen up), a deploy never starts with traffic down"
            )
        if stale is not None:
            self.repair(stale)

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
        if not self.lb_running or self.state.live is None:
            return
        live = self.stack.router.active_colour()
        if live != self.state.live:
            self.say(
                "deploy.repair.switch",
                f"HAProxy serves {live}, never verified; switching back to {self.state.live}",
            )
            self.stack.router.wait_ready(self.state.live, timeout_s=30)
            self.stack.router.switch(self.state.live)

    def colours(self) -> None:
        """The live colour as HAProxy holds it, cross-checked with the recorded state."""
        live = self.stack.router.active_colour() if self.lb_running else None
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

    def database(self) -> DatabaseBackup:
        """The database service's database, for backups, restores and the rehearsal."""
        db = self.config.db_service
        if not self.stack.running_services([db]):
            self.stack.start([db])
        (container_id,) = self.stack.container_ids(db)
        env = self.config.environment
        return DatabaseBackup(
            container_id,
            database=env.get("POSTGRES_DB", "aptos"),
            user=env.get("POSTGRES_USER", "aptos_user"),
            backup_dir=self.config.backup_dir,
            keep=self.config.keep_backups,
        )

    def backup(self) -> None:
        """A verified, compressed, rotated dump of the database before anything changes."""
        result = self.database().create(f"{self.id}-{self.release}")
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
        """Build the idle colour's images at the release (nothing starts yet)."""
        to = self.to_colour
        services = list(self.config.services_of(to))
        self.state.releases[to] = self.release
        self._release_env()
        self.say("build", f"building {', '.join(services)} at {self.release}")
        self.brought_up = True
        self.stack.compose.build(services)

    def rehearsal(self) -> MigrationRehearsal:
        """The migration rehearsal on a scratch copy of the backup, made once per deploy."""
        if self._rehearsal is None:
            if self.backup_file is None:
                raise DeployError("the backup stage has not run: there is nothing to rehearse on")
            rehearsal = MigrationRehearsal(
                self.stack, self.database(), self.backup_file, self.to_colour, self.from_colour
            )
            self.say("migration", f"restoring the backup into {rehearsal.scratch} to rehearse on")
            rehearsal.prepare()
            self._rehearsal = rehearsal
        return self._rehearsal

    def _end_rehearsal(self) -> None:
        """The scratch copy and the tools container go once the rehearsal is over."""
        if self._rehearsal is not None:
            self.record.migration = self._rehearsal.summary()
            self._rehearsal.drop()
            self._rehearsal = None

    def bring_up(self) -> None:
        """Migrate the real database, start the idle colour, wait until it is healthy and UP.

        The migration gate (a rehearsal on a copy) has passed when this runs.
        """
        self._end_rehearsal()
        to = self.to_colour
        services = list(self.config.services_of(to))
        self.say("bring_up", f"migrating, then starting {', '.join(services)} at {self.release}")
        start = self.clock()
        self.stack.migrate(to, seed=self.from_colour is None)
        migrated = self.clock()
        self.stack.compose.up(services, force_recreate=True)
        self.stack.wait_healthy(services, self.config.healthy_timeout_s)
        if not self.lb_running:
            self.stack.check_haproxy_config()
            write_map_file(self.config.map_file, to)
            self.stack.start([self.config.loadbalancer_service])
            self.lb_running = True
        self.stack.router.wait_ready(to, timeout_s=60)
        self.say(
            "bring_up.healthy",
            f"{to} at {self.release} is healthy and UP in HAProxy",
            migrate_s=round(migrated - start, 3),
            start_to_healthy_s=round(self.clock() - migrated, 3),  # the app's own start-up
        )

    def switch(self, gates_passed: int) -> None:
        """Move new requests to the new colour through the runtime API, under load."""
        if gates_passed == 0:
            raise DeployError("no gate test ran: a deploy never passes because a check did not run")
        to = self.to_colour
        if self.from_colour is None:
            # First deploy: HAProxy started with the new colour already in its map.
            self.switched = True
            save_state(self.config.state_file, self.state)
            return
        load = self.load = self._start_load()
        if load is not None:
            self._watch_load(load, time.time() + self.config.load_window_s, "before the switch")
        result = self.stack.router.switch(to)
        self.switched_at = time.time()
        self.switched = True
        if load is not None:
            self._watch_load(load, self.switched_at + self.config.load_window_s, "after the switch")
        self.record.switch = {
            k: round(v, 3) if isinstance(v, float) else v
            for k, v in dataclasses.asdict(result).items()
        }
        self.record.switch["total_ms"] = round(result.total_ms, 3)
        self.say("switch", f"switched {result.from_colour} -> {to} in {result.total_ms:.1f} ms")
        # The recorded live colour changes only once the deploy is verified (see conclude): a
        # deploy killed after its switch leaves HAProxy and the record apart, which is how the
        # next run knows to switch back.
        save_state(self.config.state_file, self.state)
        if load is not None:  # it runs on through verify, bake and retire (or the rollback)
            self._judge_load(figures(load.samples(), self.switched_at, result.from_colour))

    def _start_load(self) -> LoadRun | None:
        cfg = self.config
        if cfg.load_users == 0:
            return None
        load = LoadRun(
            cfg.public_url,
            cfg.state_dir / "load",
            cfg.ca_file,
            users=cfg.load_users,
            user_rps=cfg.load_user_rps,
            paths=cfg.load_paths,
            # The switch windows, then verify, bake and retire; it stops by itself at the latest.
            max_seconds=2 * cfg.load_window_s + cfg.bake_s + cfg.drain_timeout_s + 120,
        )
        load.start()
        return load

    def _watch_load(self, load: LoadRun, until: float, when: str) -> None:
        """Load until ``until`` (epoch), a live line each second; after the switch, cut short.

        Cut short by the first failures over budget: every request that fails after the switch
        is a user's, so the verdict, and the rollback, come at once, not at the window's end.
        """
        next_line = time.time() + 1
        while (now := time.time()) < until:
            if self._failed_since_switch() > self.config.load_failure_budget:
                return
            if now >= next_line:
                second = last_second(load.samples(), now)
                self.progress(
                    f"load {when}: {second.requests} req/s, {second.failures} failed, "
                    f"p99 {second.p99_ms:.0f} ms"
                )
                next_line += 1
            time.sleep(0.1)

    def _failed_since_switch(self) -> int:
        """Users' requests that started after the switch and failed (0 without load)."""
        if self.load is None or self.switched_at is None:
            return 0
        return sum(1 for s in self.load.samples() if s.t >= self.switched_at and not s.ok)

    def _stop_load(self, rollback_at: float | None = None) -> None:
        """Stop the load and record its figures over the whole run (switch to the end)."""
        load, self.load = self.load, None
        if load is None:
            return
        if rollback_at is not None:  # a moment of the old colour serving again, for the record
            time.sleep(max(0.0, rollback_at + 1.0 - time.time()))
        load.stop()
        if self.switched_at is None or self.from_colour is None:
            return
        try:
            self.record.load = figures(
                load.samples(), self.switched_at, self.from_colour, rollback_at
            ).to_dict()
        except DeployError:
            return
        self.events.emit(
            "load.final", **{k: v for k, v in self.record.load.items() if k != "series"}
        )

    def _judge_load(self, load: LoadFigures) -> None:
        """Failed requests and the p99 overhead of the switch, against their budgets."""
        cfg = self.config
        self.record.load = load.to_dict()
        self.say(
            "load",
            f"load: {load.total.requests} requests, {load.total.failures} failed; p99 "
            f"{load.before.p99_ms:.1f} ms before, {load.first_second.p99_ms:.1f} ms in the second "
            f"after the switch; {load.old_colour_after_switch} answered by the old colour after it",
        )
        problems = []
        if load.total.failures > cfg.load_failure_budget:
            problems.append(
                f"{load.total.failures} requests failed (budget {cfg.load_failure_budget})"
            )
        if load.p99_overhead_ms > cfg.load_p99_budget_ms:
            problems.append(
                f"p99 rose by {load.p99_overhead_ms:.1f} ms in the second after the switch "
                f"(budget {cfg.load_p99_budget_ms:.0f} ms)"
            )
        if load.old_colour_after_switch:
            problems.append(
                f"{load.old_colour_after_switch} requests after the switch hit the old colour"
            )
        if problems:
            raise DeployError("under load: " + "; ".join(problems))

    def bake(self) -> None:
        """Watch the new colour for ``bake_s`` before the old one goes: a failure rolls back.

        Caught here: a container that stops, restarts (Docker's restart count) or turns
        unhealthy, a server HAProxy no longer sees UP, and failed requests of the load that
        runs on since the switch.
        """
        to, seconds = self.to_colour, self.config.bake_s
        if seconds == 0:
            return
        services = self.config.services_of(to)
        ids = {service: self.stack.container_ids(service) for service in services}
        restarts = {i: self.stack.engine.state(i).restarts for c in ids.values() for i in c}
        deadline = self.clock() + seconds
        while True:
            problems = [
                f"{s.backend}/{s.server} is {s.status} in HAProxy"
                for s in self.stack.router.not_ready(to)
            ]
            failed = self._failed_since_switch()
            if failed > self.config.load_failure_budget:
                problems.append(f"{failed} user requests failed since the switch")
            for service, containers in ids.items():
                for container in containers:
                    state = self.stack.engine.state(container)
                    if state.restarts > restarts[container]:
                        problems.append(f"{service} restarted ({state.describe()})")
                    elif not state.ready:
                        problems.append(f"{service} is {state.describe()}")
            if problems:
                logs = "".join(
                    f"\n{service}: {self.stack.engine.logs(containers[0], tail=10)}"
                    for service, containers in ids.items()
                    if containers and any(service in p for p in problems)
                )
                raise DeployError(f"{to} failed while baking: {'; '.join(problems)}{logs}")
            if self.clock() >= deadline:
                break
            time.sleep(0.5)
        self.say("bake", f"{to} stayed up and healthy for {seconds:g}s")

    def retire(self) -> None:
        """Drain the old colour, then stop it (now, or after the configured delay)."""
        old = self.from_colour
        if old is None:
            return
        waited = self.stack.router.drain(old, self.config.drain_timeout_s)
        services = list(self.config.services_of(old))
        delay = self.config.retire_delay_s
        if delay == 0:
            self.stack.stop(services)
            self.say("retire", f"{old} drained in {waited:.2f}s and stopped (containers kept)")
            return
        self._schedule_retire(old, delay)
        self.say(
            "retire", f"{old} drained in {waited:.2f}s; stops in {delay:.0f}s unless rolled back"
        )

    def _schedule_retire(self, colour: Colour, delay: float) -> None:
        argv = [
            sys.executable,
            "-m",
            "pytest_bluegreen",
            "--project-dir",
            str(self.config.project_dir),
        ]
        argv += ["--project-name", self.config.project_name]
        if self.config.config_file is not None:
            argv += ["--config", str(self.config.config_file)]
        for path in self.config.compose_files:
            argv += ["-f", str(path)]
        argv += ["retire", colour, "--after", str(delay)]
        # `setsid --fork` detaches it (new session, reparented to init) and returns at once, so
        # no child of this process outlives the deploy.
        with open(self.config.state_dir / "retire.log", "ab") as log:
            subprocess.run(
                ["setsid", "--fork", *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **self.config.env},
                check=True,
                timeout=30,
            )

    def stage_done(self, name: str, outcome: str, duration_s: float, message: str = "") -> None:
        """Record a stage's outcome; saved at once, so a killed deploy leaves its trace."""
        self.record.set_stage(name, outcome, round(duration_s, 3), message)
        if self._rehearsal is not None:
            self.record.migration = self._rehearsal.summary()
        self.events.emit(
            "stage", stage=name, outcome=outcome, duration_s=duration_s, message=message
        )
        if self.lock.held:
            self.records.save(self.record)

    # -- the end -------------------------------------------------------------------------------

    def conclude(
        self, failed_stage: str | None, error: str | None, verdict_at: float | None
    ) -> None:
        """Finish the deploy: done, aborted or rolled back; record, notify, unlock."""
        self.concluded = True
        self._end_rehearsal()
        try:
            if failed_stage is None and error is None:
                self._stop_load()
                self.state.live, self.state.last_deploy = self.to_colour, self.id
                save_state(self.config.state_file, self.state)
                self.record.finish("deployed")
            elif self.switched:
                self.rollback(verdict_at or self.clock())
                self.record.finish("rolled_back", error=error)
            else:
                self.abort()
                self.record.finish("aborted", error=error)
        except BluegreenError as exc:
            problem = f"{error}; then: {exc}" if error else str(exc)
            self.record.finish("rolled_back" if self.switched else "aborted", error=problem)
            raise
        finally:
            self._stop_load()
            self.records.save(self.record)
            self.events.emit("deploy.end", result=self.record.result, error=self.record.error)
            for problem in metrics.publish(self.config, self.record):
                self.say("metrics.failed", f"metrics not published: {problem}", level="warning")
            self._prune_images()
            outcome = self.record.result
            kinds: dict[str, NotificationKind] = {"deployed": "success", "rolled_back": "rollback"}
            self.notifier_send(kinds.get(outcome, "failure"))
            self.events.close()
            self.lock.release()

    def _prune_images(self) -> None:
        """Old release images go: the newest ``keep_releases``, live and previous stay."""
        if not self.services or self._stack is None:
            return
        try:
            removed = self.stack.prune_release_images(
                self.services, self.config.keep_releases, self.state.releases.values()
            )
        except Exception as exc:  # disk hygiene must never fail a deploy
            self.say("images.failed", f"old release images not removed: {exc}", level="warning")
            return
        if removed:
            self.say("images.pruned", f"removed old release images: {', '.join(removed)}")

    def abort(self) -> None:
        """Before the switch: stop what this deploy started; live traffic was never touched."""
        if not self.brought_up or self.from_colour is None:
            return
        services = list(self.config.services_of(self.to_colour))
        self.say("abort", f"stopping {', '.join(services)}; {self.from_colour} still serves")
        self.state.releases.pop(self.to_colour, None)
        self._keep_logs(services)
        self.stack.stop(services)

    def rollback(self, verdict_at: float) -> None:
        """After the switch: traffic back to the old colour at once, then prove it serves.

        The failed colour is stopped afterwards (its containers kept for their logs).
        """
        old = self.from_colour
        if old is None:
            raise DeployError(
                "the first deploy failed after its switch: there is no colour to roll back to"
            )
        self.stack.revive(old)
        rollback_at = time.time()
        self.stack.router.switch(old)
        self.record.rollback_s = round(self.clock() - verdict_at, 3)
        problems = check_colour_serves(
            self.config.public_url, self.config.critical_paths, old, self.config.ca_file
        )
        if problems:
            raise DeployError(f"rolled back to {old}, but it does not serve: {'; '.join(problems)}")
        self.record.rollback_verified_s = round(self.clock() - verdict_at, 3)
        self._stop_load(rollback_at)
        self.state.live = old
        self.state.releases.pop(self.to_colour, None)  # never a rollback target
        save_state(self.config.state_file, self.state)
        failed = list(self.config.services_of(self.to_colour))
        self._keep_logs(failed)
        self.stack.stop(failed)
        self.say(
            "rollback",
            f"rolled back to {old} in {self.record.rollback_s:.3f}s, verified after "
            f"{self.record.rollback_verified_s:.3f}s",
        )

    def _keep_logs(self, services: list[str], lines: int = 60) -> None:
        """The last lines of the failed colour's services, secrets masked, for the report."""
        logs: dict[str, Any] = {}
        for service in services:
            for container in self.stack.container_ids(service):
                text = self.stack.engine.logs(container, tail=lines)
                logs[service] = redact(text, self.secrets)
        self.record.logs = logs

    def notifier_send(self, kind: NotificationKind) -> None:
        for failure in self.notifier.notify(kind, self.record):
            self.say(
                "notify.failed",
                f"notification to {failure.url} failed: {failure.error}",
                level="warning",
            )
