"""Typed, validated settings of a blue-green stack.

Settings come from ``[tool.bluegreen]`` in ``pyproject.toml`` (or a ``bluegreen.toml``): the
stack's own keys there, the rest in one table per section (``[tool.bluegreen.gates]``...). The
section dataclasses below are the one schema: each field's annotation is its key's type, its
default the key's default, and its :class:`Rule` (in the field's metadata) the checks beyond the
type and the flat key it had before sections, which is still read. The stack's environment comes
from the shell overlaid on its ``.env`` file, which is what Compose sees too. Every unknown key or
wrong value is a :class:`ConfigError` that names the file and the key, raised before anything is
touched.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin, get_type_hints

import tomllib

from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.errors import ConfigError

CONFIG_FILES: Final = ("pyproject.toml", "bluegreen.toml")
PROJECT_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]*")
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Kinds of database a deploy backs up and rehearses migrations on ("none": neither applies).
DATABASE_KINDS: Final = ("none", "postgres", "mysql", "commands")
# Where a kind's database name and user come from when the settings leave them empty.
DATABASE_DEFAULTS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "postgres": (("POSTGRES_DB",), ("POSTGRES_USER",)),
    "mysql": (("MARIADB_DATABASE", "MYSQL_DATABASE"), ()),
    "commands": ((), ()),
}
# TLS at HAProxy: its own self-signed certificate, the team's files, or none (TLS ends upstream).
TLS_MODES: Final = ("self-signed", "files", "off")
# Container engines a deploy drives: Compose on one host, or the services of a Docker Swarm stack.
ENGINES: Final = ("compose", "swarm")
# Load generators that drive users' requests across the switch.
LOAD_GENERATORS: Final = ("locust",)
# Container hardening checks of the hardening gate, and what each does by default.
HARDENING_DEFAULTS: Final = {"non_root": "gate", "limits": "warn", "secret_files": "gate"}
ENV_REFERENCE: Final = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")

# The environment variables that move the ports the reference stack publishes, and their
# defaults: named in the error when one of them is taken.
PORT_SETTINGS: Final = {
    "PUBLIC_HTTP_PORT": 80,
    "PUBLIC_HTTPS_PORT": 443,
    "PREVIEW_BLUE_PORT": 8441,
    "PREVIEW_GREEN_PORT": 8442,
    "STATS_PORT": 8404,
    # Swarm only: each loadbalancer replica's runtime API on TCP, on its node.
    "ADMIN_PORT": 9999,
}

# Where the admin socket and the map file live inside the loadbalancer container.
LB_STATE_IN_CONTAINER: Final = "/var/lib/bluegreen"

Part = Literal["", "entries", "keys", "values"]


@dataclass(frozen=True, slots=True)
class Rule:
    """What a setting must be beyond its type, and its flat key from before sections."""

    flat: str = ""  # its key directly under [tool.bluegreen] before sections ("": its own name)
    new: bool = False  # a key that came with the sections: it has no flat spelling
    choices: tuple[str, ...] = ()  # the value (of a table: each value) is one of these
    keys: tuple[str, ...] = ()  # a table's keys are among these
    may_be_empty: bool = False  # a list that may be empty
    zero: bool = False  # a number that may be 0 (others must be positive)
    colour: bool = False  # every entry contains "{colour}"
    paths: Part = ""  # which part starts with "/": the list's entries, a table's keys or values
    names: Part = ""  # which part is environment variable names
    status: bool = False  # a table's values are HTTP statuses
    url: bool = False  # http:// or https:// (a list: every entry; a string: when set)
    exists: bool = False  # a file that must exist
    read: bool = True  # False: set by the loader, never read from the settings


def rule(**checks: Any) -> dict[str, Rule]:
    """A field's metadata: its :class:`Rule`."""
    return {"rule": Rule(**checks)}


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """What runs the containers, and how long each step may take."""

    # compose: one host's Compose project. swarm: a Swarm stack on the manager the environment's
    # DOCKER_HOST names (or this host), images pushed to a registry every node pulls from.
    name: str = field(default="compose", metadata=rule(flat="engine", choices=ENGINES))
    build_host: str = ""  # swarm: the engine that builds and pushes (DOCKER_HOST); "" = the same
    healthy_timeout_s: float = 180.0
    # Every command a deploy runs is bounded: a build, and each one-off command (migrations,
    # seed, the rehearsal's commands). When one runs out, the deploy stops there (an abort before
    # the switch) and the containers the command started, one-off ones included, are removed.
    build_timeout_s: float = 1800.0
    command_timeout_s: float = 600.0
    # Image tags kept per colour service's repository after a deploy: the newest ones, and
    # the live and previous colours' releases always.
    keep_releases: int = 5


@dataclass(frozen=True, slots=True)
class ServicesSettings:
    """The stack's per-colour services, patterns where "{colour}" is replaced by blue or green."""

    # The ones HAProxy routes to (with an HTTP port), and workers (no port), started after the
    # switch unless ``workers_start`` is "with_colour", and stopped at retire with their own
    # stop_grace_period.
    colours: tuple[str, ...] = field(
        default=("web-{colour}",), metadata=rule(flat="colour_services", colour=True)
    )
    workers: tuple[str, ...] = field(default=(), metadata=rule(may_be_empty=True, colour=True))
    workers_start: str = field(
        default="after_switch", metadata=rule(choices=("after_switch", "with_colour"))
    )
    loadbalancer: str = field(default="loadbalancer", metadata=rule(flat="loadbalancer_service"))

    def services_of(self, colour: Colour) -> tuple[str, ...]:
        return tuple(pattern.format(colour=colour) for pattern in self.colours)

    def workers_of(self, colour: Colour) -> tuple[str, ...]:
        return tuple(pattern.format(colour=colour) for pattern in self.workers)

    def release_services_of(self, colour: Colour) -> tuple[str, ...]:
        """Every service of a colour's release: the routed ones, then the workers."""
        return (*self.services_of(colour), *self.workers_of(colour))


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """HAProxy: its backends, the hosts it answers on, TLS, and what ``bluegreen init`` routes."""

    # HAProxy backends that serve one colour, one per routed service, checked before a switch.
    backends: tuple[str, ...] = field(
        default=("web_{colour}",), metadata=rule(flat="router_backends", colour=True)
    )
    public_host: str = "localhost"
    preview_host: str = "127.0.0.1"  # where the preview routes answer (a node, on a swarm)
    # TLS at HAProxy: "self-signed" (a CA and certificate of its own in the state folder),
    # "files" (the team's certificate and key; their CA, if not a public one, for the probes),
    # or "off" (plain HTTP: TLS ends at a terminator in front).
    tls: str = field(default="self-signed", metadata=rule(choices=TLS_MODES))
    tls_cert_file: Path | None = field(default=None, metadata=rule(exists=True))
    tls_key_file: Path | None = field(default=None, metadata=rule(exists=True))
    tls_ca_file: Path | None = field(default=None, metadata=rule(exists=True))
    # For ``bluegreen init``: the path prefix HAProxy routes to each routed service, and the
    # path it checks each one's health on.
    routes: Mapping[str, str] = field(default_factory=dict, metadata=rule(paths="values"))
    health_paths: Mapping[str, str] = field(default_factory=dict, metadata=rule(paths="values"))

    def backends_of(self, colour: Colour) -> tuple[str, ...]:
        return tuple(pattern.format(colour=colour) for pattern in self.backends)


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """The database a deploy backs up first, and where its backups go."""

    # Its kind, its Compose service, its name and user ("${VAR}" reads the stack's environment;
    # empty: the kind's usual variables), and for "commands" the team's own backup (dump on
    # stdout) and restore (dump on stdin, "{database}" replaced) commands.
    kind: str = field(default="none", metadata=rule(flat="database", choices=DATABASE_KINDS))
    service: str = field(default="db", metadata=rule(flat="db_service"))
    name: str = field(default="", metadata=rule(flat="database_name"))
    user: str = field(default="", metadata=rule(flat="database_user"))
    backup_command: tuple[str, ...] = field(default=(), metadata=rule(may_be_empty=True))
    restore_command: tuple[str, ...] = field(default=(), metadata=rule(may_be_empty=True))
    # Where backups go (default: under the state folder) and how many are kept.
    backup_dir: Path = Path(".bluegreen/backups")
    keep_backups: int = 10


@dataclass(frozen=True, slots=True)
class MigrationSettings:
    """Migrations, the first deploy's seed, and their rehearsal on a copy of the database."""

    # None, or any command run in a one-off container of ``service`` (default: the first colour
    # service) at the new release; the optional pending command prints one pending migration per
    # line, the optional check command fails on a model change without its migration. The seed
    # runs on a first deploy only.
    service: str = field(default="", metadata=rule(flat="migrate_service"))
    command: tuple[str, ...] = field(
        default=(), metadata=rule(flat="migrate_command", may_be_empty=True)
    )
    pending_command: tuple[str, ...] = field(
        default=(), metadata=rule(flat="migration_pending_command", may_be_empty=True)
    )
    check_command: tuple[str, ...] = field(
        default=(), metadata=rule(flat="migration_check_command", may_be_empty=True)
    )
    seed_command: tuple[str, ...] = field(default=(), metadata=rule(may_be_empty=True))
    # The rehearsal: the new release's migrations run first on a scratch copy of the backup, a
    # database server of its own on a network of its own where it answers to the database
    # service's name, so the app finds it whatever variable it reads; ``rehearsal_env`` adds
    # variables to the rehearsal's containers ({host}, {port}, {database}, {user} filled in).
    # Then the live colour's image runs on that copy and must still answer ``rehearsal_paths``
    # (default: the critical paths) on ``rehearsal_port`` (0: not checked).
    rehearsal_env: Mapping[str, str] = field(default_factory=dict, metadata=rule(names="keys"))
    rehearsal_port: int = field(default=0, metadata=rule(zero=True))
    rehearsal_paths: tuple[str, ...] = field(
        default=(), metadata=rule(may_be_empty=True, paths="entries")
    )


@dataclass(frozen=True, slots=True)
class GateSettings:
    """What must hold before the switch, and after it."""

    # Suites that gate the switch, and the post-switch suite: "bluegreen:<name>" for a gate
    # shipped in the package, anything else a path under the project.
    suites: tuple[str, ...] = field(
        default=(
            "bluegreen:migration",
            "bluegreen:http",
            "bluegreen:latency",
            "bluegreen:hardening",
        ),
        metadata=rule(flat="gate_suites", may_be_empty=True),
    )
    postdeploy_suite: str = "bluegreen:postdeploy"
    # Paths every colour must serve; checked by the gates, the post-deploy suite and a rollback,
    # with the status each answers (200 when not listed).
    critical_paths: tuple[str, ...] = field(default=("/",), metadata=rule(paths="entries"))
    expected_status: Mapping[str, int] = field(
        default_factory=dict, metadata=rule(paths="keys", status=True)
    )
    # Each hardening check ("non_root", "limits", "secret_files"): "gate", "warn" or "off".
    hardening: Mapping[str, str] = field(
        default_factory=lambda: dict(HARDENING_DEFAULTS),
        metadata=rule(keys=tuple(HARDENING_DEFAULTS), choices=("gate", "warn", "off")),
    )
    # Latency gate: each critical path this many times on the new colour and on the live one,
    # interleaved; p50 and p99 of the new one within budget, and its p99 no more than the
    # margin above the live colour's.
    latency_rounds: int = 20
    latency_p50_budget_ms: float = 250.0
    latency_p99_budget_ms: float = 500.0
    latency_margin_ms: float = 100.0
    # After the post-deploy suite, the new colour is watched this long, the old one still
    # running: a container that stops, restarts or turns unhealthy, or a server HAProxy takes
    # out, rolls back at once (a release that crashes seconds after the switch).
    bake_s: float = field(default=5.0, metadata=rule(zero=True))


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """Load across the switch (Locust, through the public URL), and the budgets it is judged by.

    Users (0: no load), requests per second per user, seconds of load before and after the
    switch, the paths requested, failed requests, and p99 in the second after the switch minus
    p99 before it.
    """

    # What sends the requests (adapters/load's registry): Locust, in a process of its own.
    generator: str = field(default="locust", metadata=rule(new=True, choices=LOAD_GENERATORS))
    users: int = field(default=4, metadata=rule(flat="load_users", zero=True))
    user_rps: float = field(default=5.0, metadata=rule(flat="load_user_rps"))
    window_s: float = field(default=3.0, metadata=rule(flat="load_window_s"))
    paths: tuple[str, ...] = field(
        default=("/",), metadata=rule(flat="load_paths", paths="entries")
    )
    failure_budget: int = field(default=0, metadata=rule(flat="load_failure_budget", zero=True))
    p99_budget_ms: float = field(default=100.0, metadata=rule(flat="load_p99_budget_ms"))


@dataclass(frozen=True, slots=True)
class RetireSettings:
    """Retiring the old colour: wait (bounded) until it has no sessions, then stop it after a delay.

    Delay 0: at once, inside the deploy; more: a detached process, so a rollback within the window
    is a runtime-API switch only. Its containers are stopped, never removed.
    """

    drain_timeout_s: float = 30.0
    delay_s: float = field(default=0.0, metadata=rule(flat="retire_delay_s", zero=True))


@dataclass(frozen=True, slots=True)
class ReportingSettings:
    """Where a deploy's news goes, and which values never appear in it."""

    # Notifications: webhook URLs receive start, success, failure and rollback.
    webhooks: tuple[str, ...] = field(default=(), metadata=rule(may_be_empty=True, url=True))
    webhook_style: str = field(default="json", metadata=rule(choices=("json", "slack")))
    # Metrics (Prometheus text format) after every deploy: a file for node_exporter's textfile
    # collector (default <state_dir>/metrics/bluegreen.prom), and a push to a Pushgateway if set.
    metrics_file: Path | None = None
    pushgateway_url: str = field(default="", metadata=rule(url=True))
    # Secrets: every variable of the stack's environment whose name looks secret (PASSWORD,
    # TOKEN, SECRET, _KEY...) has its value masked in every output (console, event log, webhooks,
    # record, HTML and JUnit reports, metrics); these names (matched ignoring case) are added.
    secret_names: tuple[str, ...] = field(
        default=(), metadata=rule(may_be_empty=True, names="entries")
    )


@dataclass(frozen=True, slots=True)
class StackConfig:
    """Everything needed to drive one blue-green stack: its own keys, then one per section.

    The defaults are generic (one routed service ``web``, no database, no migrations, the gates
    shipped in the package); ``bluegreen init`` writes what it infers from a team's Compose file,
    and a stack with more (the reference stack) says so in its own settings.
    """

    project_dir: Path = field(metadata=rule(read=False))
    project_name: str = "bluegreen"
    compose_files: tuple[Path, ...] = ()
    state_dir: Path = Path(".bluegreen")
    env_file: Path = Path(".env")
    env: Mapping[str, str] = field(default_factory=dict, metadata=rule(read=False))
    # The settings file these came from, for a detached helper process to read them again.
    config_file: Path | None = field(default=None, metadata=rule(read=False))
    engine: EngineSettings = field(default_factory=EngineSettings)
    services: ServicesSettings = field(default_factory=ServicesSettings)
    router: RouterSettings = field(default_factory=RouterSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    migrations: MigrationSettings = field(default_factory=MigrationSettings)
    gates: GateSettings = field(default_factory=GateSettings)
    load: LoadSettings = field(default_factory=LoadSettings)
    retire: RetireSettings = field(default_factory=RetireSettings)
    reporting: ReportingSettings = field(default_factory=ReportingSettings)

    def migrate_service_of(self, colour: Colour) -> str:
        """The service whose image runs the migrations: the setting, else the first colour one."""
        return (self.migrations.service or self.services.colours[0]).format(colour=colour)

    @property
    def has_database(self) -> bool:
        return self.database.kind != "none"

    @property
    def has_migrations(self) -> bool:
        return self.has_database and bool(self.migrations.command)

    @property
    def paths_on_copy(self) -> tuple[str, ...]:
        """What the live colour must answer on the migrated copy."""
        return self.migrations.rehearsal_paths or self.gates.critical_paths

    def resolve(self, value: str) -> str:
        """``value`` with each ``${VAR}`` read from the stack's environment (a missing one: "")."""
        env = self.environment
        return ENV_REFERENCE.sub(lambda m: env.get(m["name"], ""), value)

    def _from_env(self, value: str, names: tuple[str, ...], what: str) -> str:
        if value:
            resolved = self.resolve(value)
        else:
            env = self.environment
            resolved = next((env[n] for n in names if env.get(n)), "")
        if not resolved:
            where = (
                f"set {' or '.join(names)} in {self.env_file} or the environment, or "
                if names
                else "set "
            )
            raise ConfigError(
                f"no database {what} for the {self.database.kind} database: "
                f"{where}bluegreen.database.{what}"
            )
        return resolved

    def database_name_value(self) -> str:
        """The live database's name, as the settings or the kind's usual variables give it."""
        names, _ = DATABASE_DEFAULTS.get(self.database.kind, ((), ()))
        return self._from_env(self.database.name, names, "name")

    def database_user_value(self) -> str:
        """The database user ("" where the kind works as the container's own superuser)."""
        _, names = DATABASE_DEFAULTS.get(self.database.kind, ((), ()))
        if not names and not self.database.user:
            return ""
        return self._from_env(self.database.user, names, "user")

    @property
    def lb_state_dir(self) -> Path:
        """Host side of the loadbalancer's state mount: map file and admin socket."""
        return self.state_dir / "lb"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "deploy.lock"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "deploy.log.jsonl"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def ca_file(self) -> Path | None:
        """What clients verify HTTPS against: the self-signed CA, the team's CA, or the system's."""
        if self.router.tls == "self-signed":
            return self.tls_dir / "ca.pem"
        return self.router.tls_ca_file

    @property
    def site_pem(self) -> Path:
        """The certificate and key HAProxy serves (made, or copied from the team's files)."""
        return self.tls_dir / "site.pem"

    @property
    def metrics_path(self) -> Path:
        """The textfile for node_exporter: ``metrics_file``, else under the state folder."""
        return self.reporting.metrics_file or self.state_dir / "metrics" / "bluegreen.prom"

    @property
    def admin_socket(self) -> Path:
        return self.lb_state_dir / "admin.sock"

    @property
    def map_file(self) -> Path:
        return self.lb_state_dir / "active.map"

    @property
    def environment(self) -> dict[str, str]:
        """The stack's environment as Compose sees it: the env file, overridden by ``env``."""
        merged = {**read_env_file(self.env_file), **self.env}
        merged["BLUEGREEN_STATE_DIR"] = str(self.state_dir)
        return merged

    def port(self, name: str) -> int:
        """One of :data:`PORT_SETTINGS`, as the environment sets it."""
        raw = self.environment.get(name, str(PORT_SETTINGS[name]))
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} in the environment is not a port number") from None

    @property
    def public_url(self) -> str:
        if self.router.tls == "off":
            return self.public_http_url
        return f"https://{self.router.public_host}:{self.port('PUBLIC_HTTPS_PORT')}"

    @property
    def public_http_url(self) -> str:
        return f"http://{self.router.public_host}:{self.port('PUBLIC_HTTP_PORT')}"

    def preview_url(self, colour: Colour) -> str:
        """The idle-colour route: that colour only, never the live traffic."""
        name = f"PREVIEW_{colour.upper()}_PORT"
        scheme = "http" if self.router.tls == "off" else "https"
        return f"{scheme}://{self.router.preview_host}:{self.port(name)}"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.port('STATS_PORT')}/stats"


# The schema, read once from the dataclasses above: "" is the stack's own keys.
SECTIONS: Final[dict[str, type]] = {
    f.name: get_type_hints(StackConfig)[f.name]
    for f in dataclasses.fields(StackConfig)
    if dataclasses.is_dataclass(get_type_hints(StackConfig)[f.name])
}


@dataclass(frozen=True, slots=True, eq=False)
class Key:
    """One settable key of the schema: where it lives, its type, and its rule."""

    section: str  # "" for the stack's own keys
    name: str
    hint: Any
    rule: Rule
    default: Any

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name

    @property
    def flat(self) -> str:
        """Its spelling directly under [tool.bluegreen] before sections."""
        return self.rule.flat or self.name


def _keys(section: str, cls: type) -> dict[str, Key]:
    hints = get_type_hints(cls)
    keys = {}
    for f in dataclasses.fields(cls):
        the_rule = f.metadata.get("rule", Rule())
        if f.name in SECTIONS or not the_rule.read:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        keys[f.name] = Key(section, f.name, hints[f.name], the_rule, default)
    return keys


SCHEMA: Final[dict[str, dict[str, Key]]] = {
    "": _keys("", StackConfig),
    **{name: _keys(name, cls) for name, cls in SECTIONS.items()},
}
# Each section key's flat spelling from before sections, still read.
FLAT: Final[dict[str, Key]] = {
    key.flat: key
    for name, keys in SCHEMA.items()
    if name
    for key in keys.values()
    if not key.rule.new
}
assert len(FLAT) == sum(
    1 for name, keys in SCHEMA.items() if name for key in keys.values() if not key.rule.new
), "flat keys collide"
assert not FLAT.keys() & SCHEMA[""].keys(), "a flat key is a stack key"


def setting_defaults() -> dict[str, Any]:
    """Every key's default, by its dotted name (``services.workers``)."""
    return {key.dotted: key.default for keys in SCHEMA.values() for key in keys.values()}


def as_written(table: Mapping[str, Any]) -> dict[str, Any]:
    """A settings table as written, flat or sectioned, by dotted name; unknown keys left out.

    For ``bluegreen init`` and ``doctor``, which read what the team wrote before validating it.
    """
    found: dict[str, Any] = {}
    for key, _, value in _entries(table, "", strict=False):
        found[key.dotted] = value
    return found


def load_config(
    project_dir: Path,
    config_file: Path | None = None,
    compose_files: list[Path] | None = None,
    environ: Mapping[str, str] | None = None,
    project_name: str | None = None,
) -> StackConfig:
    """Read and validate the settings of the stack in ``project_dir``.

    ``compose_files`` and ``project_name`` (from the command line) replace the configured ones.
    ``environ`` (default: this process's environment) overrides the stack's env file.
    """
    project_dir = project_dir.resolve()
    table, source = _read_table(project_dir, config_file)
    where = _where(source, project_dir)
    values: dict[str, dict[str, Any]] = {name: {} for name in SCHEMA}
    for key, written, raw in list(_entries(table, where, strict=True)):  # every key known first
        values[key.section][key.name] = _checked(key, written, raw, where, project_dir)
    stack = values.pop("")
    if project_name is not None:
        stack["project_name"] = project_name
        where_name = ""
    else:
        where_name = where
    stack.setdefault("project_name", default_project_name(project_dir))
    if not PROJECT_NAME.fullmatch(stack["project_name"]):
        raise ConfigError(
            f"{where_name}bluegreen.project_name {stack['project_name']!r} must be lowercase "
            "letters, digits, '-' or '_', starting with a letter or digit"
        )
    files = tuple(_under(project_dir, str(f)) for f in compose_files or ())
    stack["compose_files"] = (
        files or stack.get("compose_files") or (project_dir / "docker-compose.blue-green.yml",)
    )
    for compose_file in stack["compose_files"]:
        if not compose_file.is_file():
            raise ConfigError(f"compose file not found: {compose_file}")
    state_dir = stack.setdefault("state_dir", project_dir / ".bluegreen")
    stack.setdefault("env_file", project_dir / ".env")
    values["database"].setdefault("backup_dir", state_dir / "backups")
    config = StackConfig(
        project_dir=project_dir,
        env=dict(os.environ if environ is None else environ),
        config_file=source,
        **stack,
        **{name: SECTIONS[name](**fields) for name, fields in values.items()},
    )
    _check_combinations(config, where)
    return config


def default_project_name(project_dir: Path) -> str:
    """The project folder's name as a Compose project name: lowercase, [a-z0-9_-]."""
    name = re.sub(r"[^a-z0-9_-]+", "-", project_dir.name.lower()).strip("-_")
    return name or "bluegreen"


def _check_combinations(config: StackConfig, where: str) -> None:
    """Settings that only make sense together: one line naming what is missing."""
    router, database, migrations = config.router, config.database, config.migrations
    certificate = (router.tls_cert_file, router.tls_key_file)
    if router.tls == "files" and None in certificate:
        raise ConfigError(
            f"{where}bluegreen.router.tls = 'files' needs bluegreen.router.tls_cert_file and "
            "tls_key_file"
        )
    if router.tls != "files" and certificate != (None, None):
        raise ConfigError(
            f"{where}bluegreen.router.tls_cert_file and tls_key_file need "
            "bluegreen.router.tls = 'files'"
        )
    if database.kind == "commands":
        if not database.backup_command or not database.name:
            raise ConfigError(
                f"{where}bluegreen.database.kind = 'commands' needs "
                "bluegreen.database.backup_command and bluegreen.database.name"
            )
        if migrations.command and not database.restore_command:
            raise ConfigError(
                f"{where}bluegreen.migrations.command with bluegreen.database.kind = 'commands' "
                "needs bluegreen.database.restore_command: the rehearsal restores the backup "
                "into a scratch server first"
            )
    if database.kind == "none" and migrations.command:
        raise ConfigError(
            f"{where}bluegreen.migrations.command needs a database: set "
            "bluegreen.database.kind (postgres, mysql or commands)"
        )
    if len(config.router.backends) > len(config.services.colours):
        raise ConfigError(
            f"{where}bluegreen.router.backends has more entries than bluegreen.services.colours "
            "(one backend per routed service; workers have none)"
        )


def _under(project_dir: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else project_dir / path


def _where(source: Path | None, project_dir: Path) -> str:
    """The prefix of an error about the settings: the file they came from."""
    if source is None:
        return ""
    return f"{source.relative_to(project_dir) if source.is_relative_to(project_dir) else source}: "


def _read_table(project_dir: Path, config_file: Path | None) -> tuple[dict[str, Any], Path | None]:
    if config_file is not None:
        path = config_file if config_file.is_absolute() else project_dir / config_file
        if not path.is_file():
            raise ConfigError(f"configuration file not found: {path}")
        candidates = [path]
    else:
        candidates = [project_dir / name for name in CONFIG_FILES if (project_dir / name).is_file()]
    for path in candidates:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        if path.name == "pyproject.toml":
            section = data.get("tool", {}).get("bluegreen")
            if section is None:
                continue
        else:
            section = data.get("tool", {}).get("bluegreen", data)
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: [tool.bluegreen] must be a table")
        return dict(section), path
    return {}, None


def _entries(table: Mapping[str, Any], where: str, strict: bool) -> Iterator[tuple[Key, str, Any]]:
    """Each setting of ``table`` with its key and its spelling there, flat or sectioned.

    A sub-table is a section only when its name is a section's: an old flat key's value may be a
    table too (``hardening = {...}``). ``strict``: an unknown key, or one setting spelled twice,
    is an error.
    """
    spelled: dict[Key, str] = {}
    for name, value in table.items():
        if name in SECTIONS and isinstance(value, dict):
            found = [(SCHEMA[name].get(k), f"{name}.{k}", v) for k, v in value.items()]
        else:
            found = [(SCHEMA[""].get(name) or FLAT.get(name), name, value)]
        for key, written, raw in found:
            if key is None:
                if strict:
                    raise ConfigError(f"{where}unknown key bluegreen.{written}{_closest(written)}")
                continue
            if key in spelled and strict:
                raise ConfigError(
                    f"{where}bluegreen.{spelled[key]} and bluegreen.{written} are the same "
                    f"setting: keep bluegreen.{key.dotted} only"
                )
            spelled[key] = written
            yield key, written, raw


def _closest(written: str) -> str:
    """``; did you mean ...?`` with the known key closest to ``written``, in its new spelling."""
    spellings = {key.dotted: key.dotted for keys in SCHEMA.values() for key in keys.values()}
    spellings |= {flat: key.dotted for flat, key in FLAT.items()}
    spellings |= {name: name for name in SECTIONS}
    match = difflib.get_close_matches(written, spellings, n=1)
    return f"; did you mean bluegreen.{spellings[match[0]]}?" if match else ""


_TYPE_NAMES: Final[dict[Any, str]] = {
    str: "a str",
    int: "an int",
    float: "a float",
    Path: "a str",
    tuple: "a list",
    Mapping: "a table",
}
_TYPES: Final[dict[Any, type | tuple[type, ...]]] = {
    str: str,
    int: int,
    float: (int, float),
    Path: str,
    tuple: list,
    Mapping: dict,
}


def _checked(key: Key, written: str, value: Any, where: str, project_dir: Path) -> Any:
    """``value`` of ``key`` as the dataclass holds it, or an error naming the file and the key."""
    name = f"{where}bluegreen.{written}"
    the_rule = key.rule
    hint = key.hint
    if isinstance(hint, types.UnionType):  # Path | None: a path when set
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    kind = get_origin(hint) or hint
    if not _is_a(value, kind):
        raise ConfigError(
            f"{name} must be {_TYPE_NAMES[kind]}, not {type(value).__name__} ({value!r})"
        )
    if kind is tuple:
        if (not value and not the_rule.may_be_empty) or not all(
            isinstance(item, str) and item for item in value
        ):
            raise ConfigError(f"{name} must be a non-empty list of strings")
        _check_part(name, the_rule, "entries", value)
        if get_args(hint)[0] is Path:
            return tuple(_under(project_dir, item) for item in value)
        return tuple(value)
    if kind is Mapping:
        want = get_args(hint)[1]
        for item, item_value in value.items():
            if not isinstance(item_value, want) or isinstance(item_value, bool):
                raise ConfigError(
                    f"{name}.{item} must be {_TYPE_NAMES[want]}, not {type(item_value).__name__}"
                )
            if the_rule.status and not 100 <= item_value <= 599:
                raise ConfigError(f"{name}.{item} must be an HTTP status (100-599)")
            if the_rule.keys and item not in the_rule.keys:
                raise ConfigError(
                    f"{where}unknown key bluegreen.{written}.{item} (known: "
                    f"{', '.join(the_rule.keys)})"
                )
            if the_rule.choices and item_value not in the_rule.choices:
                raise ConfigError(f"{name}.{item} must be one of {', '.join(the_rule.choices)}")
        _check_part(name, the_rule, "keys", list(value))
        _check_part(name, the_rule, "values", list(value.values()))
        return {**key.default, **value}
    if kind in (int, float):
        if value < 0 or (value == 0 and not the_rule.zero):
            raise ConfigError(f"{name} must be positive, not {value!r}")
        return float(value) if kind is float else value
    if the_rule.url and value and not _is_http_url(value):
        raise ConfigError(f"{name} must start with http:// or https://")
    if the_rule.choices and value not in the_rule.choices:
        raise ConfigError(f"{name} must be one of {', '.join(the_rule.choices)}")
    if kind is Path:
        path = _under(project_dir, value)
        if the_rule.exists and not path.is_file():
            raise ConfigError(f"{name}: file not found: {path}")
        return path
    return value


def _is_a(value: object, kind: Any) -> bool:
    return isinstance(value, _TYPES[kind]) and not isinstance(value, bool)


def _check_part(name: str, the_rule: Rule, part: Part, items: list[str]) -> None:
    """The checks of a list's entries, or a table's keys or values."""
    if part == "entries" and the_rule.colour and not all("{colour}" in i for i in items):
        raise ConfigError(f"{name}: every entry must contain '{{colour}}'")
    if part == "entries" and the_rule.url and not all(_is_http_url(i) for i in items):
        raise ConfigError(f"{name}: every URL must start with http:// or https://")
    if the_rule.paths == part:
        bad = next((p for p in items if not p.startswith("/")), None)
        if bad is not None:
            raise ConfigError(f"{name}: every path must start with '/', not {bad!r}")
    if the_rule.names == part:
        wrong = next((n for n in items if not ENV_NAME.fullmatch(n)), None)
        if wrong is not None:
            raise ConfigError(
                f"{name}: {wrong!r} is not an environment variable name (letters, digits and "
                "'_', not starting with a digit)"
            )


def _is_http_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a Compose ``.env`` file: ``KEY=VALUE`` lines, comments, optional quotes."""
    if not path.is_file():
        return {}
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env
