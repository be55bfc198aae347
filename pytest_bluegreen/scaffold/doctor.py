"""``bluegreen doctor``: is this stack ready for ``pytest --bg-deploy``? One line per check.

Each failing line says exactly what to do. It goes on past a failure where it can (settings a
newer key has not reached yet are read as written), so one run shows every problem.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from pytest_bluegreen.adapters.engines.compose import port_in_use
from pytest_bluegreen.adapters.engines.compose_cli import (
    Compose,
    PublishedPort,
    Runner,
    ServiceSpec,
    detect_compose_command,
)
from pytest_bluegreen.core.colours import COLOURS
from pytest_bluegreen.core.config import PORT_SETTINGS, StackConfig, load_config, setting_defaults
from pytest_bluegreen.core.errors import BluegreenError
from pytest_bluegreen.scaffold.init import HAPROXY_DIR, stored_digest
from pytest_bluegreen.scaffold.source import (
    OVERRIDE,
    Settings,
    env_values,
    project_name_of,
    read_settings,
    read_source,
)

HAPROXY_CFG_IN_CONTAINER: Final = "/usr/local/etc/haproxy/haproxy.cfg"
GENERATED: Final = (
    OVERRIDE,
    f"{HAPROXY_DIR}/haproxy.cfg",
    f"{HAPROXY_DIR}/Dockerfile",
    f"{HAPROXY_DIR}/healthcheck.sh",
)
_DEFAULTS: Final = setting_defaults()


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: what was checked, whether it passed, what to do if not."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


@dataclass
class Stack:
    """What the checks read, gathered once: settings as written, files, environment."""

    project_dir: Path
    table: dict[str, Any]
    config: StackConfig | None
    project_name: str
    files: list[Path]
    env: dict[str, str]
    env_file: Path
    command: tuple[str, ...] | None = None
    specs: dict[str, ServiceSpec] | None = None
    resolved: dict[str, Any] | None = None

    def patterns(self, key: str) -> list[str]:
        """A list setting as written, else its default (workers: none)."""
        return list(self.table.get(key, _DEFAULTS.get(key, ())))

    @property
    def team_files(self) -> list[Path]:
        return [f for f in self.files if f.resolve() != (self.project_dir / OVERRIDE).resolve()]

    def compose(self, files: Sequence[Path], run: Runner) -> Compose:
        assert self.command is not None
        return Compose(
            self.command, tuple(files), self.project_name, self.project_dir, self.env, run
        )


def run_doctor(
    project_dir: Path,
    say: Callable[[str], None] = print,
    run: Runner = subprocess.run,
) -> int:
    """Every check, one line each; 0 when all pass, 1 otherwise."""
    ok = True
    for check in checks(project_dir.resolve(), run):
        say(check.line())
        ok = ok and check.ok
    say("all checks passed" if ok else "some checks failed: fix them in order, then run again")
    return 0 if ok else 1


def checks(project_dir: Path, run: Runner = subprocess.run) -> Iterator[Check]:
    stack, check = _settings(project_dir)
    yield check
    yield _files_exist(stack)
    yield _generated_present(stack)
    docker = _docker(run)
    try:
        stack.command = detect_compose_command(run)
    except BluegreenError as exc:
        yield Check("compose", False, str(exc))
        yield docker
        yield _stats_password(stack)
        return
    yield _compose_accepts(stack, run)
    yield _not_stale(stack, run)
    yield _colours_resolve(stack)
    yield _backends(stack)
    yield docker
    yield _stats_password(stack)
    yield from _ports(stack, run, docker.ok)


def _settings(project_dir: Path) -> tuple[Stack, Check]:
    """The settings check, and the stack as the settings describe it, parsed or not."""
    config: StackConfig | None = None
    table: dict[str, Any] = {}
    try:
        raw = read_settings(project_dir)
        table = raw.table
        if raw.path is None:
            check = Check(
                "settings",
                False,
                "no [tool.bluegreen] in pyproject.toml and no bluegreen.toml: run bluegreen init",
            )
        else:
            config = load_config(project_dir)
            check = Check("settings", True, f"{raw.path.name} parses")
    except BluegreenError as exc:
        check = Check("settings", False, f"{exc}: fix it (or run bluegreen init)")
    if config is not None:
        stack = Stack(
            project_dir, table, config, config.project_name, list(config.compose_files),
            config.environment, config.env_file,
        )  # fmt: skip
        return stack, check
    env_file = project_dir / str(table.get("env_file") or ".env")
    files = [Path(f) for f in table.get("compose_files") or ()]
    stack = Stack(
        project_dir,
        table,
        None,
        project_name_of(project_dir, Settings(table)),
        [f if f.is_absolute() else project_dir / f for f in files],
        {**env_values(env_file), **os.environ},
        env_file,
    )
    return stack, check


def _files_exist(stack: Stack) -> Check:
    if not stack.files:
        return Check("compose files", False, "the settings name none: set compose_files")
    missing = [str(f) for f in stack.files if not f.is_file()]
    if missing:
        return Check(
            "compose files",
            False,
            f"not found: {', '.join(missing)}: fix compose_files, or run bluegreen init",
        )
    return Check("compose files", True, ", ".join(_rel(f, stack.project_dir) for f in stack.files))


def _generated_present(stack: Stack) -> Check:
    if not any(f.resolve() == (stack.project_dir / OVERRIDE).resolve() for f in stack.files):
        return Check(
            "generated files",
            True,
            f"not used ({OVERRIDE} is not among compose_files): the stack is its own",
        )
    missing = [g for g in GENERATED if not (stack.project_dir / g).is_file()]
    if missing:
        return Check("generated files", False, f"missing {', '.join(missing)}: run bluegreen init")
    return Check("generated files", True, f"{OVERRIDE} and {HAPROXY_DIR}/ present")


def _compose_accepts(stack: Stack, run: Runner) -> Check:
    name = "compose config"
    present = [f for f in stack.files if f.is_file()]
    if not present:
        return Check(name, False, "no Compose file to check (see above)")
    compose = stack.compose(present, run)
    try:
        stack.specs = compose.services()
        # Interpolated (v1 cannot read ${VAR} ports otherwise); held in memory, never printed.
        stack.resolved = yaml.safe_load(compose.run("config", timeout=60).stdout) or {}
    except (BluegreenError, yaml.YAMLError) as exc:
        first = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:400]
        return Check(name, False, f"{first}: fix the Compose file or its environment (.env)")
    return Check(name, True, f"{len(stack.specs)} services with every file and the environment")


def _not_stale(stack: Stack, run: Runner) -> Check:
    name = "generated override"
    override = stack.project_dir / OVERRIDE
    if not override.is_file() or not stack.team_files:
        return Check(name, True, "nothing to compare (no generated override in use)")
    stored = stored_digest(override.read_text(encoding="utf-8"))
    try:
        current = read_source(
            stack.project_dir, stack.team_files, stack.project_name, stack.command, run
        ).digest
    except BluegreenError as exc:
        return Check(name, False, str(exc))
    if stored != current:
        files = ", ".join(_rel(f, stack.project_dir) for f in stack.team_files)
        return Check(
            name,
            False,
            f"{OVERRIDE} was generated from another version of {files} (or by another Compose "
            "version): run bluegreen init --force",
        )
    return Check(name, True, f"up to date with {_rel(stack.team_files[0], stack.project_dir)}")


def _colours_resolve(stack: Stack) -> Check:
    name = "colour services"
    if stack.specs is None:
        return Check(name, False, "not checked: Compose could not read the files (see above)")
    wrong = []
    patterns = [*stack.patterns("services.colours"), *stack.patterns("services.workers")]
    for pattern in patterns:
        for colour in COLOURS:
            service = pattern.replace("{colour}", colour)
            if service not in stack.specs:
                wrong.append(f"{pattern} has no {service}")
    if wrong:
        return Check(
            name,
            False,
            f"{'; '.join(wrong)}: run bluegreen init --force, or fix services.colours/workers",
        )
    return Check(name, True, f"{', '.join(patterns)} in blue and green")


def _haproxy_cfg(stack: Stack) -> Path:
    """The configuration the loadbalancer mounts, else the generated one."""
    lb = str(stack.table.get("services.loadbalancer") or "loadbalancer")
    specs = [((stack.resolved or {}).get("services") or {}).get(lb) or {}]
    if stack.resolved is None:  # Compose could not read them: the files as written
        for path in stack.files:
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError):
                continue
            specs.append(
                ((doc.get("services") if isinstance(doc, dict) else {}) or {}).get(lb) or {}
            )
    for spec in reversed(specs):
        for volume in spec.get("volumes") or ():
            source, target = _mount(volume)
            if target == HAPROXY_CFG_IN_CONTAINER and source and "$" not in source:
                path = Path(source)
                return path if path.is_absolute() else stack.files[0].parent / path
    return stack.project_dir / HAPROXY_DIR / "haproxy.cfg"


def _mount(volume: object) -> tuple[str, str]:
    if isinstance(volume, Mapping):
        return str(volume.get("source") or ""), str(volume.get("target") or "")
    parts = str(volume).split(":")
    return (parts[0], parts[1]) if len(parts) >= 2 else ("", parts[0])


def _backends(stack: Stack) -> Check:
    name = "haproxy backends"
    cfg = _haproxy_cfg(stack)
    if not cfg.is_file():
        return Check(name, False, f"{cfg} not found: run bluegreen init")
    words = [line.split() for line in cfg.read_text(encoding="utf-8").splitlines()]
    backends = {w[1] for w in words if len(w) >= 2 and w[0] == "backend"}
    servers = {w[2].rsplit(":", 1)[0] for w in words if len(w) >= 3 and w[0] == "server"}
    wrong = []
    for pattern in stack.patterns("router.backends"):
        wrong += [
            f"no backend {b}"
            for c in COLOURS
            if (b := pattern.replace("{colour}", c)) not in backends
        ]
    for pattern in stack.patterns("services.colours"):
        wrong += [
            f"no server for {s}"
            for c in COLOURS
            if (s := pattern.replace("{colour}", c)) not in servers
        ]
    if wrong:
        return Check(
            name,
            False,
            f"{_rel(cfg, stack.project_dir)}: {'; '.join(wrong)}: run bluegreen init --force "
            "(or fix router_backends)",
        )
    return Check(name, True, f"every routed service has its backends in {cfg.name}")


def _docker(run: Runner) -> Check:
    try:
        result = run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("docker", False, f"no answer ({exc}): install or start Docker")
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no answer"]
        return Check(
            "docker",
            False,
            f"{last[0]}: start the Docker daemon (systemctl start docker) or set DOCKER_HOST",
        )
    return Check("docker", True, f"engine {result.stdout.strip()} answers")


def _stats_password(stack: Stack) -> Check:
    if stack.env.get("STATS_PASSWORD"):
        return Check("STATS_PASSWORD", True, "set")
    return Check(
        "STATS_PASSWORD",
        False,
        f"not set: add STATS_PASSWORD=<a long random value> to "
        f"{_rel(stack.env_file, stack.project_dir)} (bluegreen init adds one)",
    )


def _ports(stack: Stack, run: Runner, docker_ok: bool) -> Iterator[Check]:
    if stack.specs is None:
        yield Check("ports", False, "not checked: Compose could not read the files (see above)")
        return
    holders = _holders(run) if docker_ok else {}
    wanted = [
        (name, port)
        for name, spec in stack.specs.items()
        if not spec.profiles
        for port in spec.ports
    ]
    if not wanted:
        yield Check("ports", True, "the stack publishes none")
        return
    for service, port in wanted:
        label = f"port {port.port} ({service})"
        holder = holders.get(port.port)
        if holder is not None and holder[0] == stack.project_name:
            if holder[1] == service:
                yield Check(label, True, f"held by this project's {service}")
            else:
                yield Check(
                    label,
                    False,
                    f"held by this project's {holder[1]} (the one-colour stack): stop it "
                    f"(docker-compose -p {stack.project_name} stop {holder[1]}) before the "
                    f"first deploy; {service} publishes this port now",
                )
        elif holder is not None or port_in_use(port):
            who = f"container {holder[2]}" if holder is not None else "another program"
            yield Check(
                label, False, f"in use by {who}: stop it, or {_port_fix(port, service, stack.env)}"
            )
        else:
            yield Check(label, True, "free")


def _port_fix(port: PublishedPort, service: str, env: Mapping[str, str]) -> str:
    setting = next(
        (k for k, v in PORT_SETTINGS.items() if env.get(k, str(v)) == str(port.port)), None
    )
    if setting:
        return f"set {setting} in .env to a free port"
    return f"set the matching PUBLIC_*/PREVIEW_*/STATS_PORT in .env, or change {service}'s ports"


def _holders(run: Runner) -> dict[int, tuple[str, str, str]]:
    """Host port -> (Compose project, service, container name) of running containers."""
    fmt = (
        '{{.Label "com.docker.compose.project"}}\t{{.Label "com.docker.compose.service"}}'
        "\t{{.Names}}\t{{.Ports}}"
    )
    try:
        result = run(["docker", "ps", "--format", fmt], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    holders: dict[int, tuple[str, str, str]] = {}
    for line in result.stdout.splitlines() if result.returncode == 0 else ():
        fields = line.split("\t")
        if len(fields) != 4:
            continue
        for mapping in fields[3].split(", "):
            host, arrow, _ = mapping.partition("->")
            first, _, last = host.rpartition(":")[2].partition("-")
            if arrow and first.isdigit() and (last or first).isdigit():
                for port in range(int(first), int(last or first) + 1):
                    holders[port] = (fields[0], fields[1], fields[2])
    return holders


def _rel(path: Path, project_dir: Path) -> str:
    try:
        return str(path.resolve().relative_to(project_dir.resolve()))
    except ValueError:
        return str(path)
