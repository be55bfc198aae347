"""A multi-node Docker Swarm of Docker-in-Docker nodes on this machine, with a local registry.

Everything lives on the host engine under the prefix ``bgswarm``:

- the bridge network ``bgswarm-net`` (a free ``172.29.N.0/24``, so every container keeps its
  address across a restart: node ``k`` is ``.1k``, the registry ``.2``);
- the registry ``bgswarm-registry`` (image ``bluegreen-swarm-registry:bookworm``, Debian's
  ``docker-registry``), its blobs in the volume ``bgswarm-registry``, published on the host as
  ``127.0.0.1:45000`` and known on the network as ``registry``;
- the nodes ``bgswarm-node1`` (the manager), ``bgswarm-node2``... (workers), image
  ``bluegreen-swarm-node:bookworm``, each engine's state in the volume ``bgswarm-node<k>-data``.
  Each node forwards its own ``127.0.0.1:45000`` to the registry, so ``127.0.0.1:45000/<name>``
  is the same image on the host and on every node, and each engine answers the host on
  ``tcp://<ip>:2375``.

What these nodes cannot do: the kernel of this machine has no IPVS, so a service's virtual IP
and the ingress routing mesh do not work in them. Tasks reach each other on an overlay network
by their own addresses (``tasks.<service>`` in the swarm's DNS, or ``endpoint_mode: dnsrr``),
and a port published in host mode is reachable from the host at ``<node ip>:<port>``.

``start_cluster()`` reuses a healthy cluster, builds the images when they are missing, and
makes the rest anew; ``python -m tests.swarm.cluster up|down|status`` (or
``scripts/swarm-cluster.sh``) does the same from a shell.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = [
    "NODE_IMAGE",
    "PREFIX",
    "PROBE_IMAGE",
    "REGISTRY",
    "REGISTRY_IMAGE",
    "ClusterError",
    "Node",
    "SwarmCluster",
    "ensure_image",
    "existing_cluster",
    "remove_cluster",
    "start_cluster",
]

HERE: Final = Path(__file__).resolve().parent
PREFIX: Final = "bgswarm"
NETWORK: Final = f"{PREFIX}-net"
REGISTRY_CONTAINER: Final = f"{PREFIX}-registry"
REGISTRY_VOLUME: Final = f"{PREFIX}-registry"
REGISTRY: Final = "127.0.0.1:45000"
NODE_IMAGE: Final = "bluegreen-swarm-node:bookworm"
REGISTRY_IMAGE: Final = "bluegreen-swarm-registry:bookworm"
# A 2 MB BusyBox service for the tests: `serve` on :8080 answers its hostname.
PROBE_IMAGE: Final = "bluegreen-swarm-probe:bookworm"
IMAGE_FOLDERS: Final = {
    NODE_IMAGE: HERE / "node",
    REGISTRY_IMAGE: HERE / "registry",
    PROBE_IMAGE: HERE / "probe",
}
# The swarm notices a dead node after a few missed heartbeats (5 s default period).
HEARTBEAT: Final = "2s"
# What a Docker-in-Docker node needs here (--privileged is refused on this machine).
NODE_RUN_OPTIONS: Final = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run",
)  # fmt: skip
# Subnets tried for the bridge network, first free one wins; clear of 172.17/16 and 172.18/16,
# which each node's own engine takes for docker0 and docker_gwbridge.
SUBNETS: Final = tuple(f"172.29.{n}.0/24" for n in range(0, 256, 16))

# One start_cluster() or remove_cluster() at a time on this machine (tests, benches, the CLI).
LOCK_FILE: Final = Path(tempfile.gettempdir()) / f"{PREFIX}-cluster.lock"

Progress = Callable[[str], None]


@contextlib.contextmanager
def _machine_lock(timeout_s: float = 600) -> Iterator[None]:
    with LOCK_FILE.open("a") as lock:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ClusterError(
                        f"another process holds {LOCK_FILE} for over {timeout_s:g}s"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class ClusterError(RuntimeError):
    """The cluster could not be made or used; the message is one line that says where to look."""


def _one_line(text: str, limit: int = 300) -> str:
    """The telling line of a command's output: Docker's error, else the last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # The Docker CLI ends a failure with its own "exit status 1".
    lines = [line for line in lines if not line.startswith("exit status ")] or lines
    errors = [line for line in lines if line.startswith(("Error", "error"))]
    return ((errors or lines)[-1] if lines else "")[:limit]


def _run(
    args: Sequence[str], *, timeout: float = 120, what: str = "", check: bool = True
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{what or ' '.join(args)}: no answer within {timeout:g}s") from None
    if check and done.returncode != 0:
        detail = _one_line(done.stderr) or _one_line(done.stdout)
        raise ClusterError(f"{what or ' '.join(args)} failed: {detail}")
    return done


def _host_docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    return _run(["docker", *args], timeout=timeout, check=check).stdout.strip()


def _exists(kind: str, name: str) -> bool:
    return _run(["docker", kind, "inspect", name], timeout=30, check=False).returncode == 0


def base_image() -> str:
    """``$BASE_IMAGE``, else ``debian:bookworm-slim`` or ``bluegreen-base:bookworm``, if present."""
    chosen = os.environ.get("BASE_IMAGE")
    if chosen:
        return chosen
    for candidate in ("debian:bookworm-slim", "bluegreen-base:bookworm"):
        if _exists("image", candidate):
            return candidate
    return "debian:bookworm-slim"


def ensure_image(tag: str, progress: Progress = print) -> bool:
    """Build ``tag`` (one of :data:`IMAGE_FOLDERS`) on the host when it is missing.

    Returns True when it was built. The build's output goes to a log file that an error names.
    """
    if _exists("image", tag):
        return False
    folder = IMAGE_FOLDERS[tag]
    base = base_image()
    log = Path(tempfile.gettempdir()) / f"{PREFIX}-build-{folder.name}.log"
    progress(f"building {tag} from {base} (log: {log})")
    with log.open("w") as out:
        try:
            built = subprocess.run(
                ["docker", "build", "--build-arg", f"BASE_IMAGE={base}", "-t", tag, str(folder)],
                stdout=out, stderr=subprocess.STDOUT, timeout=900,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise ClusterError(f"building {tag} took over 900s; its log: {log}") from None
    if built.returncode != 0:
        raise ClusterError(f"building {tag} failed: {_one_line(log.read_text())}; its log: {log}")
    return True


@dataclass(frozen=True, slots=True)
class Node:
    """One Docker-in-Docker node: ``name`` is its swarm hostname (``node1``...)."""

    name: str
    container: str
    ip: str
    manager: bool

    @property
    def docker_host(self) -> str:
        return f"tcp://{self.ip}:2375"


@dataclass
class SwarmCluster:
    """A running cluster: its nodes (the manager first) and its registry's host address."""

    nodes: list[Node]
    registry: str = REGISTRY
    # True when start_cluster() found it (running, or stopped and started again) and made nothing.
    reused: bool = field(default=False, compare=False)

    @property
    def manager(self) -> Node:
        return next(node for node in self.nodes if node.manager)

    @property
    def workers(self) -> list[Node]:
        return [node for node in self.nodes if not node.manager]

    def node(self, name: str) -> Node:
        """The node called ``name`` (``node2``) or run in container ``name`` (``bgswarm-node2``)."""
        for node in self.nodes:
            if name in (node.name, node.container):
                return node
        raise ClusterError(f"no node {name!r} in the cluster ({', '.join(self.names())})")

    def names(self) -> list[str]:
        return [node.name for node in self.nodes]

    def env(self) -> dict[str, str]:
        """The environment that points a Docker client at the manager's engine."""
        return {"DOCKER_HOST": self.manager.docker_host}

    def docker(self, node: Node, *args: str, timeout: float = 120) -> str:
        """``docker <args>`` against ``node``'s engine; its stdout, stripped."""
        return _run(
            ["docker", "-H", node.docker_host, *args],
            timeout=timeout, what=f"docker {' '.join(args)} on {node.name}",
        ).stdout.strip()  # fmt: skip

    def node_states(self) -> dict[str, str]:
        """Each swarm node's state as the manager sees it: ``ready``, ``down``, ``unknown``..."""
        ids = self.docker(self.manager, "node", "ls", "-q", timeout=30).split()
        if not ids:
            return {}
        shown = self.docker(
            self.manager, "node", "inspect", "--format",
            "{{.Description.Hostname}} {{.Status.State}}", *ids, timeout=30,
        )  # fmt: skip
        states: dict[str, str] = {}
        for line in shown.splitlines():
            hostname, _, state = line.partition(" ")
            # A node made anew under an old name: the live entry wins over a stale "down" one.
            if states.get(hostname) != "ready":
                states[hostname] = state
        return states

    def wait_nodes_ready(self, timeout_s: float = 90) -> None:
        """Wait until every node of the cluster is ``ready`` in the manager's view."""
        deadline = time.monotonic() + timeout_s
        states: dict[str, str] = {}
        error = ""
        while True:
            try:
                states = self.node_states()
                error = ""
            except ClusterError as failure:
                error = str(failure)
            if not error and all(states.get(name) == "ready" for name in self.names()):
                return
            if time.monotonic() >= deadline:
                shown = error or ", ".join(
                    f"{name} {states.get(name, 'missing')}" for name in self.names()
                )
                raise ClusterError(f"swarm nodes not all ready after {timeout_s:g}s: {shown}")
            time.sleep(0.5)

    def wait_engine(self, node: Node, timeout_s: float = 60) -> None:
        """Wait until ``node``'s engine answers the host on its TCP socket."""
        _wait_engine(node, timeout_s)

    def kill_node(self, name: str, *, graceful: bool = False) -> None:
        """Stop node ``name``'s engine: killed at once, as a crash or a power cut would.

        ``graceful`` stops it with ``docker stop`` instead, which first waits for the node's
        tasks' stop grace periods (10 s by default).
        """
        node = self.node(name)
        _host_docker("stop" if graceful else "kill", node.container, timeout=60)

    def restart_node(self, name: str, timeout_s: float = 90) -> None:
        """Start node ``name`` again and wait until the swarm sees every node ready.

        Its swarm membership is in its volume, so it rejoins by itself with the same address.
        """
        node = self.node(name)
        _host_docker("start", node.container, timeout=60)
        deadline = time.monotonic() + timeout_s
        _wait_engine(node, timeout_s)
        self.wait_nodes_ready(max(1.0, deadline - time.monotonic()))

    def push(self, *images: str) -> list[str]:
        """Tag host images as ``127.0.0.1:45000/<name>:<tag>`` and push them; the references."""
        references = []
        for image in images:
            reference = (
                image if image.startswith(f"{self.registry}/") else f"{self.registry}/{image}"
            )
            if reference != image:
                _host_docker("tag", image, reference, timeout=60)
            _run(["docker", "push", reference], timeout=600, what=f"docker push {reference}")
            references.append(reference)
        return references

    def teardown(self) -> None:
        """Remove the cluster's containers, network and volumes (everything ``bgswarm-*``)."""
        remove_cluster()


def _containers(prefix: str) -> list[str]:
    listed = _host_docker("ps", "-a", "--filter", f"name=^{prefix}", "--format", "{{.Names}}")
    return sorted(listed.split())


def remove_cluster() -> None:
    """Remove every container, the network and every volume of the cluster, whatever state."""
    with _machine_lock():
        _remove_cluster()


def _remove_cluster() -> None:
    containers = _containers(f"{PREFIX}-node") + _containers(REGISTRY_CONTAINER)
    if containers:
        _host_docker("rm", "-f", "-v", *containers, timeout=120)
    if _exists("network", NETWORK):
        _host_docker("network", "rm", NETWORK, timeout=60)
    volumes = _host_docker("volume", "ls", "-q", "--filter", f"name=^{PREFIX}-").split()
    ours = [v for v in volumes if v == REGISTRY_VOLUME or v.startswith(f"{PREFIX}-node")]
    if ours:
        _host_docker("volume", "rm", "-f", *ours, timeout=120)


def _node_ip(network: ipaddress.IPv4Network, index: int) -> str:
    return str(network.network_address + 10 + index)


def _registry_ip(network: ipaddress.IPv4Network) -> str:
    return str(network.network_address + 2)


def _network_subnet() -> ipaddress.IPv4Network | None:
    if not _exists("network", NETWORK):
        return None
    shown = _host_docker("network", "inspect", NETWORK, "--format", "{{json .IPAM.Config}}")
    for config in json.loads(shown) or []:
        if config.get("Subnet"):
            return ipaddress.IPv4Network(config["Subnet"])
    return None


def _create_network() -> ipaddress.IPv4Network:
    failures = []
    for subnet in SUBNETS:
        made = _run(
            ["docker", "network", "create", "--subnet", subnet, NETWORK], timeout=60, check=False
        )
        if made.returncode == 0:
            return ipaddress.IPv4Network(subnet)
        failures.append(_one_line(made.stderr))
    raise ClusterError(f"could not create network {NETWORK}: {failures[-1]}")


def existing_cluster(workers: int | None = None) -> SwarmCluster | None:
    """The cluster described by the host's ``bgswarm-node*`` containers, or None.

    Running or not, healthy or not: it only says which nodes there are.
    """
    subnet = _network_subnet()
    if subnet is None:
        return None
    names = [c for c in _containers(f"{PREFIX}-node") if c.removeprefix(f"{PREFIX}-node").isdigit()]
    indexes = sorted(int(c.removeprefix(f"{PREFIX}-node")) for c in names)
    if not indexes or (workers is not None and indexes != list(range(1, workers + 2))):
        return None
    nodes = [
        Node(f"node{k}", f"{PREFIX}-node{k}", _node_ip(subnet, k), manager=k == 1) for k in indexes
    ]
    return SwarmCluster(nodes)


def _engine_answers(node: Node) -> bool:
    shown = _run(
        ["docker", "-H", node.docker_host, "version", "--format", "{{.Server.Version}}"],
        timeout=5, check=False,
    )  # fmt: skip
    return shown.returncode == 0 and bool(shown.stdout.strip())


def _running(container: str) -> bool:
    shown = _run(
        ["docker", "inspect", "--format", "{{.State.Running}}", container], timeout=30, check=False
    )
    return shown.stdout.strip() == "true"


def _wait_engine(node: Node, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _engine_answers(node):
        if not _running(node.container):
            logs = _run(["docker", "logs", "--tail", "20", node.container], check=False)
            raise ClusterError(
                f"the engine of {node.container} exited: {_one_line(logs.stderr + logs.stdout)}; "
                f"see docker logs {node.container}"
            )
        if time.monotonic() >= deadline:
            raise ClusterError(
                f"the engine of {node.container} does not answer on {node.docker_host} after "
                f"{timeout_s:g}s; see docker logs {node.container}"
            )
        time.sleep(0.3)


def _registry_answers() -> bool:
    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=3) as answer:
            return int(answer.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_registry(timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not _registry_answers():
        if time.monotonic() >= deadline:
            raise ClusterError(
                f"the registry does not answer on http://{REGISTRY}/v2/ after {timeout_s:g}s; "
                f"see docker logs {REGISTRY_CONTAINER}"
            )
        time.sleep(0.3)


def _healthy(cluster: SwarmCluster) -> bool:
    if not _registry_answers():
        return False
    if not all(_running(node.container) and _engine_answers(node) for node in cluster.nodes):
        return False
    try:
        states = cluster.node_states()
    except ClusterError:
        return False
    return set(states) == set(cluster.names()) and set(states.values()) == {"ready"}


def _start_registry(subnet: ipaddress.IPv4Network) -> None:
    if _exists("container", REGISTRY_CONTAINER):
        _host_docker("start", REGISTRY_CONTAINER)
    else:
        _host_docker(
            "run", "-d", "--name", REGISTRY_CONTAINER, "--network", NETWORK,
            "--ip", _registry_ip(subnet), "--network-alias", "registry",
            "-p", f"{REGISTRY}:5000", "-v", f"{REGISTRY_VOLUME}:/var/lib/docker-registry",
            REGISTRY_IMAGE,
        )  # fmt: skip
    _wait_registry()


def _start_node(node: Node) -> None:
    _host_docker(
        "run", "-d", "--name", node.container, "--hostname", node.name,
        "--network", NETWORK, "--ip", node.ip, *NODE_RUN_OPTIONS,
        "-v", f"{node.container}-data:/var/lib/docker", NODE_IMAGE,
    )  # fmt: skip


def _form_swarm(cluster: SwarmCluster) -> None:
    manager = cluster.manager
    cluster.docker(
        manager, "swarm", "init", "--advertise-addr", manager.ip,
        "--dispatcher-heartbeat", HEARTBEAT,
    )  # fmt: skip
    token = cluster.docker(manager, "swarm", "join-token", "-q", "worker")
    for worker in cluster.workers:
        cluster.docker(
            worker, "swarm", "join", "--advertise-addr", worker.ip, "--token", token,
            f"{manager.ip}:2377",
        )  # fmt: skip


def start_cluster(workers: int = 2, progress: Progress = print) -> SwarmCluster:
    """A running swarm of one manager and ``workers`` workers, every node ready.

    Reuses a healthy cluster of that size; a stopped one is started again when it comes back
    healthy; anything else is removed and made anew. Builds the images when they are missing.
    """
    with _machine_lock():
        return _start_cluster(workers, progress)


def _start_cluster(workers: int, progress: Progress) -> SwarmCluster:
    started = time.monotonic()

    def say(message: str) -> None:
        progress(f"swarm cluster: {message} ({time.monotonic() - started:.1f}s)")

    if _run(["docker", "info"], timeout=30, check=False).returncode != 0:
        raise ClusterError("the host's Docker engine does not answer; run scripts/ensure-docker.sh")
    for image in (NODE_IMAGE, REGISTRY_IMAGE):
        if ensure_image(image, progress):
            say(f"built {image}")

    found = existing_cluster(workers)
    if found is not None:
        if _healthy(found):
            found.reused = True
            say("reusing the running cluster")
            return found
        say("restarting the cluster's stopped containers")
        try:
            subnet = _network_subnet()
            assert subnet is not None
            _start_registry(subnet)
            for node in found.nodes:
                if not _running(node.container):
                    _host_docker("start", node.container)
            for node in found.nodes:
                _wait_engine(node, 60)
            found.wait_nodes_ready(60)
            found.reused = True
            say("cluster back")
            return found
        except ClusterError as failure:
            say(f"it did not come back ({failure}); making it anew")

    _remove_cluster()
    subnet = _create_network()
    _start_registry(subnet)
    say(f"registry up on {REGISTRY}")
    cluster = SwarmCluster(
        [
            Node(f"node{k}", f"{PREFIX}-node{k}", _node_ip(subnet, k), manager=k == 1)
            for k in range(1, workers + 2)
        ]
    )
    for node in cluster.nodes:
        _start_node(node)
    for node in cluster.nodes:
        _wait_engine(node, 60)
    say("engines up")
    _form_swarm(cluster)
    cluster.wait_nodes_ready(90)
    say(f"swarm of {len(cluster.nodes)} nodes ready, manager {cluster.manager.ip}")
    return cluster


def _status() -> int:
    cluster = existing_cluster()
    if cluster is None:
        print("no swarm cluster")
        return 1
    try:
        states = cluster.node_states()
    except ClusterError as failure:
        states = {}
        print(f"manager does not answer: {failure}")
    for node in cluster.nodes:
        role = "manager" if node.manager else "worker"
        state = states.get(node.name, "?")
        print(f"{node.name} {role} {node.docker_host} container={node.container} swarm={state}")
    print(f"registry {REGISTRY} {'answers' if _registry_answers() else 'does not answer'}")
    return 0 if _healthy(cluster) else 1


def main(argv: Sequence[str]) -> int:
    """``up [WORKERS]``, ``down`` or ``status``."""
    usage = "usage: swarm-cluster.sh up [WORKERS] | down | status"
    if not argv or argv[0] not in ("up", "down", "status"):
        print(usage, file=sys.stderr)
        return 2
    try:
        if argv[0] == "up":
            cluster = start_cluster(int(argv[1]) if len(argv) > 1 else 2)
            for key, value in cluster.env().items():
                print(f"{key}={value}")
            return 0
        if argv[0] == "down":
            remove_cluster()
            print("swarm cluster removed")
            return 0
        return _status()
    except ClusterError as failure:
        print(f"swarm-cluster: error: {failure}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
