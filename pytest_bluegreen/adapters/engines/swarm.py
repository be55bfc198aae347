"""A blue-green stack as the services of one Docker Swarm stack, spread over the nodes.

The same seam as Compose on one host (:class:`pytest_bluegreen.core.ports.Stack`): the stages do
not know which engine runs. What differs is here:

- Images are built where ``build_host`` says (the deploy's own engine by default) and pushed to
  the registry their names carry; every node pulls them from there.
- Services are created and updated by ``docker stack deploy`` of the resolved stack file, cut
  down to the services a step names (a stack deploy leaves the services it is not given alone):
  the idle colour's release never touches the live colour. A colour is stopped by scaling it to
  0 and revived by deploying it again at its recorded release.
- A "container" of the core is a replica slot of a service: its state is the slot's current
  task, wherever the scheduler put it, and a task the scheduler moved off a lost node is no
  restart of the release.
- The router is every loadbalancer replica (:mod:`.haproxy_replicas`), found through the tasks.
- The database service must run on the manager the deploy talks to (a placement constraint):
  the backup reaches it with ``docker exec`` there.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

import yaml

from pytest_bluegreen.adapters.engines import Engine
from pytest_bluegreen.adapters.engines.compose_cli import ServiceSpec, detect_compose_command
from pytest_bluegreen.adapters.engines.docker_api import DockerEngine
from pytest_bluegreen.adapters.engines.docker_run import DockerCLI
from pytest_bluegreen.adapters.engines.project import REVIVE_SERVING_TIMEOUT_S, Project
from pytest_bluegreen.adapters.routers.haproxy import write_map_file
from pytest_bluegreen.adapters.routers.haproxy_replicas import Replica, ReplicatedRouter
from pytest_bluegreen.core.colours import COLOURS, Colour
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.errors import CommandTimeout, ConfigError, DockerUnavailable, StackError
from pytest_bluegreen.core.ports import ContainerState, Progress, Router

STACK_LABEL: Final = "com.docker.stack.namespace"
SERVICE_LABEL: Final = "com.docker.swarm.service.name"
MAP_IN_REPLICA: Final = "/tmp/active.map"  # where each replica's entrypoint writes its map
FAILED: Final = ("failed", "rejected")
CONTAINER_STARTED: Final = ("ready", "starting", "running")  # its process may be serving
GONE: Final = ("shutdown", "complete", "orphaned", "remove")
FAILURES_BEFORE_GIVING_UP: Final = 3  # Swarm retries a failing task forever; a deploy does not


class SwarmTasks:
    """The manager's view of one stack: services, their tasks and the nodes, by the docker SDK.

    The client connects on first use: a router made outside a deploy needs no Docker until asked.
    """

    def __init__(self, project: str, client: Any | None = None) -> None:
        self.project = project
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = DockerEngine().client
        return self._client

    def full_name(self, service: str) -> str:
        return f"{self.project}_{service}"

    def service(self, service: str) -> dict[str, Any] | None:
        full = self.full_name(service)
        found = self.client.api.services(filters={"name": full})
        return next((s for s in found if s["Spec"]["Name"] == full), None)

    def tasks(self, service: str) -> list[dict[str, Any]]:
        spec = self.service(service)
        if spec is None:
            return []
        found = self.client.api.tasks(filters={"service": spec["ID"]})
        return [t for t in found if t.get("ServiceID") == spec["ID"]]

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {node["ID"]: node for node in self.client.api.nodes()}

    def ready_nodes(self) -> dict[str, dict[str, Any]]:
        return {i: n for i, n in self.nodes().items() if n["Status"]["State"] == "ready"}

    def replicas(self, service: str) -> int:
        """How many tasks the service wants: its replicas, or one per ready node when global."""
        spec = self.service(service)
        if spec is None:
            return 0
        mode = spec["Spec"].get("Mode", {})
        if "Global" in mode:
            return len([t for t in self.tasks(service) if t["DesiredState"] == "running"])
        return int(mode.get("Replicated", {}).get("Replicas", 1))

    def running(self, service: str) -> list[dict[str, Any]]:
        """Tasks meant to run that do, on a node the manager sees ready."""
        ready = self.ready_nodes()
        return [
            t
            for t in self.tasks(service)
            if t["DesiredState"] == "running"
            and t["Status"]["State"] == "running"
            and t.get("NodeID") in ready
        ]

    def replicas_of(self, service: str) -> list[Replica]:
        """The tasks of ``service`` whose container runs, healthy or not yet: router replicas.

        A replica still starting (its healthcheck pending) may already serve, with the colour
        it adopted from a peer before the switch: a switch must reach it too.
        """
        ready = self.ready_nodes()
        return [
            Replica(
                task=t["ID"],
                node=ready[t["NodeID"]]["Description"]["Hostname"],
                address=ready[t["NodeID"]]["Status"]["Addr"],
            )
            for t in self.tasks(service)
            if t["DesiredState"] == "running"
            and t["Status"]["State"] in CONTAINER_STARTED
            and t.get("NodeID") in ready
        ]

    def placement(self, services: Iterable[str]) -> dict[str, list[str]]:
        """Which node runs each running task of ``services`` (for the record and the report)."""
        nodes = self.nodes()
        return {
            service: sorted(
                nodes[t["NodeID"]]["Description"]["Hostname"]
                for t in self.running(service)
                if t.get("NodeID") in nodes
            )
            for service in services
        }


def swarm_router(config: StackConfig, tasks: SwarmTasks | None = None) -> ReplicatedRouter:
    """Every replica of the stack's loadbalancer, each through its runtime API on its node."""
    tasks = tasks or SwarmTasks(config.project_name)
    by_backend = {
        backend: service
        for colour in COLOURS
        for backend, service in zip(
            config.router.backends_of(colour), config.services.services_of(colour), strict=False
        )
    }
    return ReplicatedRouter(
        replicas=lambda: tasks.replicas_of(config.services.loadbalancer),
        port=config.port("ADMIN_PORT"),
        map_file=config.map_file,
        backends_of=config.router.backends_of,
        expected_servers=lambda backend: tasks.replicas(by_backend[backend]),
        map_in_container=MAP_IN_REPLICA,
    )


def for_stack_deploy(resolved: Mapping[str, Any], services: Sequence[str]) -> dict[str, Any]:
    """The resolved stack file cut down to ``services``, without what Swarm ignores (build)."""
    found = resolved.get("services") or {}
    missing = [s for s in services if s not in found]
    if missing:
        raise ConfigError(f"the stack file has no service {', '.join(missing)}")
    doc = {k: v for k, v in resolved.items() if k != "services"}
    doc["services"] = {name: _for_swarm(found[name]) for name in services}
    return doc


def _for_swarm(service: Mapping[str, Any]) -> dict[str, Any]:
    """One service as ``docker stack deploy`` reads it.

    Compose resolves ``cpus: "0.5"`` to a number, which the stack loader refuses.
    """
    out = {k: v for k, v in service.items() if k not in ("build", "profiles")}
    resources = dict(out.get("deploy", {}).get("resources") or {})
    for kind in ("limits", "reservations"):
        if isinstance(resources.get(kind), dict) and "cpus" in resources[kind]:
            resources[kind] = {**resources[kind], "cpus": str(resources[kind]["cpus"])}
    if resources:
        out["deploy"] = {**out["deploy"], "resources": resources}
    return out


def slot_of(task: Mapping[str, Any]) -> str:
    """A task's replica slot: its number, or its node for a global service."""
    return str(task["Slot"]) if task.get("Slot") else str(task.get("NodeID", ""))


def slot_state(slot_id: str, tasks: Sequence[Mapping[str, Any]]) -> ContainerState:
    """A replica slot as the core sees a container: its current task's state.

    Restarts are the slot's tasks that failed; a task shut down because its node was lost is
    not one (the scheduler moved it, the release did nothing wrong).
    """
    ordered = sorted(tasks, key=lambda t: t.get("Version", {}).get("Index", 0))
    if not ordered:
        return ContainerState(slot_id, slot_id, "removed", None, 0)
    wanted = [t for t in ordered if t["DesiredState"] == "running"]
    task = (wanted or ordered)[-1]
    state = task["Status"]["State"]
    exit_code = int(task["Status"].get("ContainerStatus", {}).get("ExitCode", 0) or 0)
    restarts = sum(t["Status"]["State"] in FAILED for t in ordered if t is not task)
    if state == "running":
        status, health = "running", None
    elif state in FAILED or state in GONE:
        status, health = "exited", None
    else:  # new, pending, assigned, accepted, preparing, ready, starting: on its way
        status, health = "running", "starting"
    return ContainerState(slot_id, slot_id, status, health, exit_code, restarts)


class SwarmStack:
    """One blue-green stack on a Docker Swarm, driven through its manager."""

    router_kind: ClassVar[str] = "haproxy-replicas"
    # The tasks run on any node; this process reaches the manager's engine only.
    runs_on_this_host: ClassVar[bool] = False

    def __init__(
        self,
        config: StackConfig,
        progress: Progress = lambda message: None,
        engine: DockerEngine | None = None,
        compose_command: tuple[str, ...] | None = None,
        *,
        router: Router | None = None,
        tasks: SwarmTasks | None = None,
    ) -> None:
        self.project = Project(
            config,
            progress,
            engine or DockerEngine(),
            compose_command or detect_compose_command(),
        )
        self.tasks = tasks or SwarmTasks(config.project_name, self.engine.client)
        self.cli = DockerCLI(timeout_s=config.engine.command_timeout_s)
        self.router: Router = router or swarm_router(config, self.tasks)

    # -- the project's, shared with every engine ------------------------------------------------

    @property
    def config(self) -> StackConfig:
        return self.project.config

    @property
    def progress(self) -> Progress:
        return self.project.progress

    @property
    def engine(self) -> DockerEngine:
        """The manager's engine: the deploy's images, its one-off containers, the database."""
        return self.project.engine

    @property
    def release_env(self) -> dict[str, str]:
        """Set by a deploy: BLUE_RELEASE/GREEN_RELEASE as recorded, over the environment's."""
        return self.project.release_env

    @release_env.setter
    def release_env(self, value: dict[str, str]) -> None:
        self.project.release_env = value

    def read_services(self) -> list[str]:
        return self.project.read_services()

    def shared_services(self, specs: dict[str, ServiceSpec] | None = None) -> list[str]:
        return self.project.shared_services(specs)

    def prepare(self, live: Colour = "blue") -> None:
        self.project.prepare(live, self.running_services)

    def prune_release_images(
        self, keep: int, protect: Iterable[str], specs: dict[str, ServiceSpec] | None = None
    ) -> list[str]:
        return self.project.prune_release_images(keep, protect, specs)

    def schedule_retire(self, colour: Colour, delay_s: float) -> None:
        self.project.schedule_retire(colour, delay_s)

    # -- reading -------------------------------------------------------------------------------

    def _resolved(self, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The stack file as Compose resolves it (variables filled in) for this deploy."""
        text = self.project.compose_with(dict(env or {})).run("config", timeout=60).stdout
        try:
            resolved = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise StackError(f"cannot read the resolved stack file: {exc}") from None
        return dict(resolved)

    def check_ports_free(self, specs: dict[str, ServiceSpec] | None = None) -> None:
        """Nothing to check: the ports are the nodes'.

        A taken one leaves its task pending, which :meth:`wait_healthy` reports with the
        scheduler's reason.
        """

    def running_services(self, services: Iterable[str]) -> list[str]:
        return [s for s in services if self.tasks.running(s)]

    def placement(self, services: Iterable[str]) -> dict[str, list[str]]:
        """The node of each running task of each service."""
        return self.tasks.placement(services)

    # -- images ----------------------------------------------------------------------------------

    def build(self, services: Sequence[str]) -> None:
        self._build(services)

    def _build(self, services: Sequence[str]) -> None:
        """Build on ``build_host`` and push, so that every node can pull the images."""
        build_host = self.config.engine.build_host
        compose = self.project.compose_with({"DOCKER_HOST": build_host} if build_host else {})
        try:
            compose.build(services, timeout=self.config.engine.build_timeout_s)
        except CommandTimeout as exc:
            raise CommandTimeout(
                f"{exc} (engine.build_timeout_s: {self.config.engine.build_timeout_s:g}s)"
            ) from None
        self.progress(f"pushing {', '.join(services)} to the registry")
        compose.run("push", *services, timeout=self.config.engine.build_timeout_s)

    def build_missing_shared(self) -> list[str]:
        """Build and push the shared services' images (see build_missing)."""
        specs = self.project.specs()
        return self.build_missing(specs, self.shared_services(specs))

    def build_missing(self, specs: dict[str, ServiceSpec], services: Sequence[str]) -> list[str]:
        """Build and push the shared images the registry may lack (cheap when it has them).

        A node cannot build, it can only pull.
        """
        building = [name for name in services if specs[name].builds]
        if building:
            self._build(building)
        return building

    # -- services ------------------------------------------------------------------------------

    def _deploy(self, services: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        """``docker stack deploy`` of ``services`` only, at the recorded releases.

        The resolved file (it holds the stack's secrets) goes through stdin, never to disk.
        """
        doc = for_stack_deploy(self._resolved(env), services)
        argv = ["docker", "stack", "deploy", "--with-registry-auth", "--prune=false"]
        argv += ["--compose-file", "-", self.config.project_name]
        what = f"docker stack deploy of {', '.join(services)}"
        stdin = yaml.safe_dump(doc, sort_keys=False)
        _run(argv, 300, what, stdin=stdin, cwd=self.config.project_dir)

    def start(self, services: Sequence[str]) -> None:
        self.progress(f"deploying {', '.join(services)} to the swarm")
        self._deploy(services)
        self.wait_healthy(services, self.config.engine.healthy_timeout_s)

    def recreate(self, services: Sequence[str]) -> None:
        """The services in fresh tasks at the release now recorded; health is the caller's.

        Those running are scaled to 0 first: they are the idle colour, no user waits on them,
        and a start-first update that a lost node leaves without room would stall.
        """
        running = [s for s in services if self.tasks.replicas(s) > 0]
        if running:
            self.stop(running)
        self.progress(f"deploying {', '.join(services)} to the swarm")
        self._deploy(services)

    def stop(self, services: Sequence[str], timeout_s: int | None = None) -> None:
        """Scale the services to 0; each task stops in its own stop_grace_period."""
        present = [s for s in services if self.tasks.service(s) is not None]
        if not present:
            return
        argv = ["docker", "service", "scale", "--detach"]
        argv += [f"{self.tasks.full_name(s)}=0" for s in present]
        _run(argv, 120, f"scaling {', '.join(present)} to 0")
        grace = max((self.project.specs()[s].stop_grace_s or 10.0 for s in present), default=10.0)
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else grace) + 30
        while any(self.tasks.running(s) for s in present):
            if time.monotonic() >= deadline:
                raise StackError(f"{', '.join(present)} still running after being scaled to 0")
            time.sleep(0.5)

    def wait_healthy(self, services: Sequence[str], timeout_s: float) -> None:
        """Wait (bounded) until every service runs as many tasks as it wants, at its image.

        A task with a healthcheck runs only once healthy. Swarm retries a failing task for
        ever: after a few failures of the same image this stops with the task's error and logs.
        """
        since = time.time()
        deadline = time.monotonic() + timeout_s
        pending = list(services)
        while pending:
            for service in list(pending):
                problem = self._not_yet(service, since)
                if problem is None:
                    pending.remove(service)
                    self.progress(f"{service} running and healthy: {self._where(service)}")
            if pending and time.monotonic() >= deadline:
                detail = "; ".join(f"{s}: {self._not_yet(s, since)}" for s in pending)
                raise StackError(f"not running and healthy after {timeout_s:.0f}s: {detail}")
            if pending:
                time.sleep(0.5)

    def _where(self, service: str) -> str:
        return ", ".join(self.tasks.placement([service])[service]) or "nowhere"

    def _not_yet(self, service: str, since: float) -> str | None:
        """Why ``service`` is not fully running yet; None when it is. Raises when it fails."""
        spec = self.tasks.service(service)
        if spec is None:
            raise StackError(f"{service} is not a service of the stack {self.config.project_name}")
        image = spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        tasks = [t for t in self.tasks.tasks(service) if _image(t) == image]
        failed = [t for t in tasks if t["Status"]["State"] in FAILED and _created(t) >= since]
        if len(failed) >= FAILURES_BEFORE_GIVING_UP:
            last = failed[-1]["Status"]
            logs = self._task_logs(failed[-1]["ID"], 20)
            raise StackError(
                f"{service}: {len(failed)} tasks failed ({last.get('Err') or last['Message']}); "
                f"its last logs:\n{logs}"
            )
        wanted = self.tasks.replicas(service)
        ready = self.tasks.ready_nodes()
        running = [
            t
            for t in tasks
            if t["DesiredState"] == "running"
            and t["Status"]["State"] == "running"
            and t.get("NodeID") in ready
        ]
        updating = spec.get("UpdateStatus", {}).get("State") in ("updating", "rollback_started")
        if len(running) >= wanted and not updating:
            return None
        starting = [t for t in tasks if t["DesiredState"] == "running" and t not in running]
        why = (
            starting[-1]["Status"].get("Err") or starting[-1]["Status"]["Message"]
            if starting
            else ""
        )
        return f"{len(running)}/{wanted} tasks running" + (f" ({why})" if why else "")

    def container_ids(self, service: str, *, running_only: bool = False) -> list[str]:
        """The service's replica slots (``service.slot``), the unit the core watches."""
        tasks = self.tasks.tasks(service)
        wanted = [t for t in tasks if t["DesiredState"] == "running"]
        if running_only:
            wanted = [t for t in wanted if t["Status"]["State"] == "running"]
        return sorted({f"{service}.{slot_of(t)}" for t in wanted})

    def container_state(self, container_id: str) -> ContainerState:
        service, _, slot = container_id.rpartition(".")
        tasks = [t for t in self.tasks.tasks(service) if slot_of(t) == slot]
        return slot_state(container_id, tasks)

    def logs(self, container_id: str, tail: int = 50) -> str:
        service, _, slot = container_id.rpartition(".")
        tasks = [t for t in self.tasks.tasks(service) if slot_of(t) == slot]
        if not tasks:
            return ""
        latest = max(tasks, key=lambda t: t.get("Version", {}).get("Index", 0))
        return self._task_logs(latest["ID"], tail)

    def _task_logs(self, task_id: str, tail: int) -> str:
        argv = ["docker", "service", "logs", "--raw", "--tail", str(tail), task_id]
        try:
            return _run(argv, 30, f"the logs of task {task_id}")
        except StackError as exc:
            return f"(no logs: {exc})"

    def database_container(self, service: str) -> str:
        """The running container of ``service`` on the manager itself (for ``docker exec``)."""
        found = self.engine.client.api.containers(
            filters={
                "label": f"{SERVICE_LABEL}={self.tasks.full_name(service)}",
                "status": "running",
            }
        )
        if not found:
            raise StackError(
                f"{service} has no running container on the manager this deploy talks to: pin it "
                "there (deploy.placement.constraints: [node.role == manager])"
            )
        return str(found[0]["Id"])

    def up(self, colours: Sequence[Colour] = ("blue", "green"), live: Colour = "blue") -> None:
        raise ConfigError(
            "bluegreen up is for the compose engine; on a swarm the first deploy creates the "
            "stack (pytest --bg-deploy)"
        )

    # -- steps of a deploy ---------------------------------------------------------------------

    def start_router(self, colour: Colour) -> None:
        """Create the loadbalancer with ``colour`` live on every replica, and its releases."""
        lb = self.config.services.loadbalancer
        write_map_file(self.config.map_file, colour)
        self.progress(f"deploying {lb} to the swarm with {colour} live")
        self._deploy([lb], {"BLUEGREEN_START_COLOUR": colour})
        self.wait_healthy([lb], self.config.engine.healthy_timeout_s)
        releases = {
            c: self.release_env[f"{c.upper()}_RELEASE"]
            for c in COLOURS
            if f"{c.upper()}_RELEASE" in self.release_env
        }
        self.router.publish_releases(releases, running=True)

    def revive(self, colour: Colour) -> None:
        """Deploy a retired colour again at its recorded release; ready, UP and serving."""
        services = list(self.config.services.release_services_of(colour))
        stopped = [s for s in services if self.tasks.replicas(s) == 0 or not self.tasks.running(s)]
        if not stopped and not self.router.not_ready(colour):
            return
        if stopped:
            self.progress(f"starting the retired {colour} colour ({', '.join(stopped)})")
            self._deploy(stopped)
        self.wait_healthy(services, self.config.engine.healthy_timeout_s)
        self.router.wait_ready(colour, timeout_s=60)
        self.project.wait_serving(colour, REVIVE_SERVING_TIMEOUT_S)

    def migrate(self, colour: Colour, *, seed: bool = True) -> None:
        """Run the migration in a one-off container of ``colour``'s image, on the manager.

        On the stack's network (attachable), where it reaches the database by its name.
        """
        cfg = self.config
        if not cfg.migrations.command:
            return
        service = cfg.migrate_service_of(colour)
        spec = self.project.compose.services()[service]  # at the release now recorded
        resolved = self._resolved()
        networks = (resolved["services"][service].get("networks") or {"default": None}).keys()
        network = f"{cfg.project_name}_{next(iter(networks))}"
        self.progress(f"migrating the database with {service} ({spec.image})")
        commands = [
            cfg.migrations.command,
            *([cfg.migrations.seed_command] if seed and cfg.migrations.seed_command else []),
        ]
        for command in commands:
            self._run_once(spec, network, command)

    def _run_once(self, spec: ServiceSpec, network: str, command: Sequence[str]) -> str:
        name = f"{self.config.project_name}-{spec.name}-run-{secrets.token_hex(4)}"
        labels = {STACK_LABEL + ".oneoff": self.config.project_name}
        self.cli.run(spec, name, spec.environment, network=network, command=command, labels=labels)
        try:
            code = _run(["docker", "wait", name], self.config.engine.command_timeout_s, f"'{name}'")
            output = _run(["docker", "logs", name], 60, f"the logs of {name}")
        finally:
            self.cli.remove(name)
        if code.strip() != "0":
            tail = "\n".join(output.splitlines()[-30:])
            raise StackError(f"'{' '.join(command)}' failed (exit {code.strip()}):\n{tail}")
        return output

    def down(self, *, volumes: bool = False) -> None:
        """Remove the stack (and the manager's volumes of it); bounded wait until it is gone."""
        project = self.config.project_name
        self.progress(f"removing the stack {project}" + (" and its volumes" if volumes else ""))
        _run(["docker", "stack", "rm", project], 120, f"removing the stack {project}")
        client = self.engine.client
        deadline = time.monotonic() + 120
        label = {"label": f"{STACK_LABEL}={project}"}
        while client.api.containers(all=True, filters=label) or client.api.networks(filters=label):
            if time.monotonic() >= deadline:
                raise StackError(f"the stack {project} is still being removed after 120s")
            time.sleep(1)
        if volumes:
            for volume in client.api.volumes(filters=label).get("Volumes") or []:
                client.api.remove_volume(volume["Name"], force=True)


def _image(task: Mapping[str, Any]) -> str:
    return str(task.get("Spec", {}).get("ContainerSpec", {}).get("Image", ""))


def _created(task: Mapping[str, Any]) -> float:
    """A task's creation time as epoch seconds (Docker gives RFC 3339 with nanoseconds)."""
    raw = str(task.get("CreatedAt", ""))
    head, _, fraction = raw.rstrip("Z").partition(".")
    try:
        stamp = datetime.fromisoformat(head + "+00:00").timestamp()
    except ValueError:
        return 0.0
    return stamp + float(f"0.{fraction[:6] or 0}")


def _run(
    argv: Sequence[str],
    timeout_s: float,
    what: str,
    stdin: str | None = None,
    cwd: Path | None = None,
) -> str:
    """One docker CLI command, bounded; ``stdin`` is its input (nothing when None)."""
    try:
        result = subprocess.run(
            list(argv),
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=cwd,
        )
    except FileNotFoundError:
        raise DockerUnavailable("cannot run 'docker': not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise CommandTimeout(f"{what} did not finish within {timeout_s:g}s") from None
    if result.returncode != 0:
        raise StackError(f"{what} failed:\n{(result.stderr + result.stdout).strip()}")
    return result.stdout


if TYPE_CHECKING:
    _IS_AN_ENGINE: type[Engine] = SwarmStack  # mypy: the registry may hand it out
