"""The operations of both surfaces, ``bluegreen <verb>`` and ``pytest --bg-<verb>``, one each.

Status, the dry-run plan, a manual switch, a rollback, a retire, and a deployment put together
from the adapters the settings pick (each from its registry: engine, router, load).
"""

from __future__ import annotations

import time
from typing import Final

from pytest_bluegreen.adapters.engines import Engine, open_engine
from pytest_bluegreen.adapters.engines.compose_cli import detect_compose_command
from pytest_bluegreen.adapters.host import StackAdapters
from pytest_bluegreen.adapters.routers import kind_of, router_for
from pytest_bluegreen.adapters.routers.haproxy import read_map_file
from pytest_bluegreen.core.colours import COLOURS, Colour, other_colour
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.deployment import Deployment
from pytest_bluegreen.core.errors import BluegreenError, LockError
from pytest_bluegreen.core.lock import DeployLock
from pytest_bluegreen.core.ports import DeployObserver, NoObserver, Progress
from pytest_bluegreen.core.record import DeployRecord, RecordStore, new_deploy_id, utc_timestamp
from pytest_bluegreen.core.rollback import MANUAL_ROLLBACK, Rollback
from pytest_bluegreen.core.state import load_state, save_state
from pytest_bluegreen.reporting.outputs import DeployOutputs
from pytest_bluegreen.stage_tracker import STAGES


def host_for(config: StackConfig, progress: Progress) -> StackAdapters:
    """The adapters the settings pick: their engine, its router, the load generator."""
    return StackAdapters(config, progress)


def stack_for(config: StackConfig, progress: Progress) -> Engine:
    """The stack on the settings' engine (see :func:`host_for`)."""
    return open_engine(config, progress)


# What the backup runs, by kind of database.
DUMPS: Final = {"postgres": "pg_dump -Fc", "mysql": "mysqldump --single-transaction"}


def status(config: StackConfig) -> str:
    """Live colour (HAProxy's word, else the map file's), servers, releases, last deploy, lock.

    ``pytest --bg-status`` and ``bluegreen status`` both print this; it needs no Docker.
    """
    state = load_state(config.state_file)
    lines = []
    router = router_for(config)
    try:
        live: Colour | None = router.active_colour()
        servers = [s for colour in COLOURS for s in router.servers(colour)]
        source = "HAProxy runtime API"
    except BluegreenError as exc:
        live, source = read_map_file(config.map_file), f"map file; HAProxy not reachable: {exc}"
        servers = []
    lines.append(f"live colour: {live or 'none'} ({source})")
    lines += [f"  server {s.backend}/{s.server}: {s.status}" for s in servers]
    for colour in COLOURS:
        lines.append(f"  {colour} release: {state.releases.get(colour, 'none')}")
    try:
        last = RecordStore(config.state_dir).last()
    except ValueError as exc:
        last, lines = None, [*lines, f"last deploy: unreadable ({exc})"]
    if last is not None:
        lines.append(
            f"last deploy: {last.id} release {last.release} "
            f"{last.from_colour or 'none'} -> {last.to_colour}: {last.result}"
            + (f" ({last.error})" if last.error else "")
        )
    holder = DeployLock(config.lock_file).running()
    lines.append(
        f"deploy running: {holder.deploy_id} (pid {holder.pid}, since {holder.started_at})"
        if holder
        else "deploy running: no"
    )
    return "\n".join(lines)


def plan(config: StackConfig, release: str) -> str:
    """What ``--bg-deploy`` would do, read-only: no file written, no container touched."""
    router = router_for(config)
    try:
        live: Colour | None = router.active_colour()
    except BluegreenError:
        live = read_map_file(config.map_file) if config.admin_socket.exists() else None
    to: Colour = other_colour(live) if live else "blue"
    compose = " ".join(detect_compose_command())
    files = " ".join(f"-f {f}" for f in config.compose_files)
    base = f"{compose} --project-name {config.project_name} {files}"
    services = " ".join(config.services.release_services_of(to))
    started = config.services.services_of(to) + (
        config.services.workers_of(to) if config.services.workers_start == "with_colour" else ()
    )
    steps = {
        "prerequisites": "Docker, Compose file, deploy lock, free ports, the shared services' "
        "images (built when missing), the shared services other than the database and "
        "loadbalancer (started when absent, never restarted), HAProxy runtime API",
        "colours": f"live {live or 'none (first deploy)'}, deploy to {to}",
        "backup": (
            f"{DUMPS.get(config.database.kind, 'the backup command')} of "
            f"{config.database.service} into {config.database.backup_dir}, verified by a "
            f"restore, keep {config.database.keep_backups}"
            if config.has_database
            else "not applicable (no database)"
        ),
        "build": f"{to.upper()}_RELEASE={release} {base} build {services}",
        "migration": (
            "the backup restored into a scratch database server, the release's migrations "
            "run there, the live colour checked on it (tests marked bluegreen_stage('migration'))"
            if config.has_migrations
            else "not applicable (no database or no migrate_command)"
        ),
        "bring_up": ("migrate; " if config.has_migrations else "")
        + f"up -d --no-deps --force-recreate {' '.join(started)}; wait healthy",
        "gates": f"{', '.join(config.gates.suites) or 'none'} against {config.preview_url(to)}",
        "switch": f"set map {router.map_in_container} active {to} ({kind_of(config).reach})"
        + ", map file rewritten"
        + (
            f"; under load: {config.load.users} Locust users x {config.load.user_rps:g} req/s, "
            f"{config.load.window_s:g} s before and after"
            if config.load.users and live
            else ""
        )
        + (
            f"; then start the workers {' '.join(config.services.workers_of(to))}"
            if config.services.workers and config.services.workers_start == "after_switch"
            else ""
        ),
        "verify": f"{config.gates.postdeploy_suite} against {config.public_url}",
        "bake": f"watch {to} for {config.gates.bake_s:g}s (containers, health, HAProxy); the old "
        "colour still runs",
        "retire": (
            f"drain {live}, stop {' '.join(config.services.release_services_of(live))}"
            if live
            else "none"
        ),
    }
    lines = [f"plan for release {release} (dry run: nothing changed)"]
    lines += [f"  {n}. {stage}: {steps[stage]}" for n, stage in enumerate(STAGES, start=1)]
    return "\n".join(lines)


def switch(
    config: StackConfig, colour: Colour | None = None, observer: DeployObserver | None = None
) -> str:
    """A manual switch (default: to the idle colour), under the deploy lock, and recorded.

    Never while a deploy runs; afterwards the recorded live colour is the one HAProxy serves,
    so the next deploy does not take it for a killed deploy's unverified switch.
    """
    lock = DeployLock(config.lock_file)
    lock.acquire(new_deploy_id(), utc_timestamp())
    try:
        router = router_for(config)
        result = router.switch(colour or other_colour(router.active_colour()))
        state = load_state(config.state_file)
        state.live = result.to_colour
        save_state(config.state_file, state)
    finally:
        lock.release()
    (observer or NoObserver()).traffic_switched(result.from_colour, result.to_colour, "manual")
    return (
        f"switched {result.from_colour} -> {result.to_colour} in {result.total_ms:.1f} ms "
        f"(preflight {result.preflight_ms:.1f}, set map {result.switch_ms:.1f}, "
        f"verify {result.verify_ms:.1f}, persist {result.persist_ms:.1f})"
    )


def rollback(
    config: StackConfig, progress: Progress, observer: DeployObserver | None = None
) -> str:
    """Switch back to the previous colour if it ran a release here, and prove it serves.

    The same rollback a deploy runs (:class:`pytest_bluegreen.core.rollback.Rollback`), with a
    manual one's policy, under the deploy lock: recorded, logged, published and notified as a
    deploy is. Nothing but the lock, the state file and one round trip to HAProxy stands
    before traffic moves when the previous colour still runs: Docker is reached only to start
    it again, or afterwards, and the outputs are opened afterwards.
    """
    since = time.monotonic()  # the command's start: the rollback's time counts from here
    lock = DeployLock(config.lock_file)
    record = DeployRecord(id=new_deploy_id(), release="", from_colour=None, to_colour=None)
    lock.acquire(record.id, record.started_at, sync=False)  # synced once traffic has moved
    outputs: DeployOutputs | None = None

    def open_outputs() -> DeployOutputs:
        nonlocal outputs
        if outputs is None:
            outputs = DeployOutputs(config, record.id)
        return outputs

    try:
        host = host_for(config, progress)
        state = load_state(config.state_file)
        # The recorded live colour, checked by the switch itself; HAProxy's word when they differ.
        live = state.live if state.live is not None else host.router.active_colour()
        rollback = Rollback(config, host, open_outputs, lock, observer=observer, progress=progress)
        result = rollback.run(record, state, live, since, MANUAL_ROLLBACK)
        return (
            f"rolled back {result.left_colour} -> {result.to_colour} (release {record.release}) "
            f"in {record.rollback_s:.3f}s, verified"
        )
    finally:
        if outputs is not None:
            outputs.close()
        lock.release()


def deployment(
    config: StackConfig,
    release: str,
    progress: Progress,
    deploy_id: str,
    observer: DeployObserver | None = None,
) -> Deployment:
    """A deployment of ``release`` on the settings' engine, with the reporting outputs."""
    return Deployment(
        config,
        release,
        host_for(config, progress),
        DeployOutputs(config, deploy_id),
        progress=progress,
        deploy_id=deploy_id,
        observer=observer,
    )


def retire(config: StackConfig, colour: Colour, progress: Progress) -> str:
    """Stop ``colour`` unless it became live again or a deploy now owns it (detached retire)."""
    lock = DeployLock(config.lock_file)
    try:
        lock.acquire(new_deploy_id(), utc_timestamp())
    except LockError:
        return f"a deploy is running; {colour} left as it is"
    try:
        stack = stack_for(config, progress)
        if stack.router.active_colour() == colour:
            return f"{colour} is live again (rolled back); not stopped"
        state = load_state(config.state_file)
        state.retired.add(colour)  # before the stop: a rollback then starts it first
        save_state(config.state_file, state)
        stack.stop(list(config.services.release_services_of(colour)))
        return f"{colour} stopped (containers kept)"
    finally:
        lock.release()
