"""Typed, validated settings of a blue-green stack.

Settings come from ``[tool.bluegreen]`` in ``pyproject.toml`` (or a ``bluegreen.toml``), and the
stack's environment from the shell overlaid on its ``.env`` file, which is what Compose sees too.
Every unknown key or wrong value is a :class:`ConfigError` that names it, raised before anything
is touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

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


@dataclass(frozen=True, slots=True)
class StackConfig:
    """Everything needed to drive one blue-green stack.

    The defaults are generic (one routed service ``web``, no database, no migrations, the gates
    shipped in the package); ``bluegreen init`` writes what it infers from a team's Compose file,
    and a stack with more (the reference stack) says so in its own settings.
    """

    project_dir: Path
    compose_files: tuple[Path, ...] = ()
    project_name: str = "bluegreen"
    # compose: one host's Compose project. swarm: a Swarm stack on the manager the environment's
    # DOCKER_HOST names (or this host), images pushed to a registry every node pulls from.
    engine: str = "compose"
    build_host: str = ""  # swarm: the engine that builds and pushes (DOCKER_HOST); "" = the same
    state_dir: Path = Path(".bluegreen")
    env_file: Path = Path(".env")
    loadbalancer_service: str = "loadbalancer"
    # Per-colour services, patterns where "{colour}" is replaced by blue or green: the ones
    # HAProxy routes to (with an HTTP port), and workers (no port), started after the switch
    # unless ``workers_start`` is "with_colour", and stopped at retire with their own
    # stop_grace_period.
    colour_services: tuple[str, ...] = ("web-{colour}",)
    workers: tuple[str, ...] = ()
    workers_start: str = "after_switch"
    # HAProxy backends that serve one colour, one per routed service, checked before a switch.
    router_backends: tuple[str, ...] = ("web_{colour}",)
    # The database: its kind, its Compose service, its name and user ("${VAR}" reads the
    # stack's environment; empty: the kind's usual variables), and for "commands" the team's
    # own backup (dump on stdout) and restore (dump on stdin, "{database}" replaced) commands.
    database: str = "none"
    db_service: str = "db"
    database_name: str = ""
    database_user: str = ""
    backup_command: tuple[str, ...] = ()
    restore_command: tuple[str, ...] = ()
    # Migrations: none, or any command run in a one-off container of ``migrate_service``
    # (default: the first colour service) at the new release; the optional pending command
    # prints one pending migration per line, the optional check command fails on a model
    # change without its migration. The seed runs on a first deploy only.
    migrate_service: str = ""
    migrate_command: tuple[str, ...] = ()
    migration_pending_command: tuple[str, ...] = ()
    migration_check_command: tuple[str, ...] = ()
    seed_command: tuple[str, ...] = ()
    # Paths every colour must serve; checked by the gates, the post-deploy suite and a rollback,
    # with the status each answers (200 when not listed).
    critical_paths: tuple[str, ...] = ("/",)
    expected_status: Mapping[str, int] = field(default_factory=dict)
    public_host: str = "localhost"
    preview_host: str = "127.0.0.1"  # where the preview routes answer (a node, on a swarm)
    # TLS at HAProxy: "self-signed" (a CA and certificate of its own in the state folder),
    # "files" (the team's certificate and key; their CA, if not a public one, for the probes),
    # or "off" (plain HTTP: TLS ends at a terminator in front).
    tls: str = "self-signed"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    # For ``bluegreen init``: the path prefix HAProxy routes to each routed service, and the
    # path it checks each one's health on.
    routes: Mapping[str, str] = field(default_factory=dict)
    health_paths: Mapping[str, str] = field(default_factory=dict)
    healthy_timeout_s: float = 180.0
    # Every command a deploy runs is bounded: a build, and each one-off command (migrations,
    # seed, the rehearsal's commands). When one runs out, the deploy stops there (an abort before
    # the switch) and the containers the command started, one-off ones included, are removed.
    build_timeout_s: float = 1800.0
    command_timeout_s: float = 600.0
    # Deploy: where backups go and how many are kept.
    backup_dir: Path = Path(".bluegreen/backups")
    keep_backups: int = 10
    # Image tags kept per colour service's repository after a deploy: the newest ones, and
    # the live and previous colours' releases always.
    keep_releases: int = 5
    # Suites that gate the switch, and the post-switch suite: "bluegreen:<name>" for a gate
    # shipped in the package, anything else a path under the project.
    gate_suites: tuple[str, ...] = (
        "bluegreen:migration",
        "bluegreen:http",
        "bluegreen:latency",
        "bluegreen:hardening",
    )
    postdeploy_suite: str = "bluegreen:postdeploy"
    # Each hardening check ("non_root", "limits", "secret_files"): "gate", "warn" or "off".
    hardening: Mapping[str, str] = field(default_factory=lambda: dict(HARDENING_DEFAULTS))
    # Retiring the old colour: wait (bounded) until it has no sessions, then stop it after a delay
    # (0: at once, inside the deploy; more: a detached process, so a rollback within the window is
    # a runtime-API switch only). Its containers are stopped, never removed.
    drain_timeout_s: float = 30.0
    retire_delay_s: float = 0.0
    # After the post-deploy suite, the new colour is watched this long, the old one still
    # running: a container that stops, restarts or turns unhealthy, or a server HAProxy takes
    # out, rolls back at once (a release that crashes seconds after the switch).
    bake_s: float = 5.0
    # Load across the switch (Locust, through the public URL): users (0: no load), requests per
    # second per user, seconds of load before and after the switch, and the budgets it is
    # judged by: failed requests, and p99 in the second after the switch minus p99 before it.
    load_users: int = 4
    load_user_rps: float = 5.0
    load_window_s: float = 3.0
    load_paths: tuple[str, ...] = ("/",)
    load_failure_budget: int = 0
    load_p99_budget_ms: float = 100.0
    # Migration rehearsal: the new release's migrations run first on a scratch copy of the
    # backup, a database server of its own on a network of its own where it answers to the
    # database service's name, so the app finds it whatever variable it reads; ``rehearsal_env``
    # adds variables to the rehearsal's containers ({host}, {port}, {database}, {user} filled
    # in). Then the live colour's image runs on that copy and must still answer
    # ``rehearsal_paths`` (default: the critical paths) on ``rehearsal_port`` (0: not checked).
    rehearsal_env: Mapping[str, str] = field(default_factory=dict)
    rehearsal_port: int = 0
    rehearsal_paths: tuple[str, ...] = ()
    # Latency gate: each critical path this many times on the new colour and on the live one,
    # interleaved; p50 and p99 of the new one within budget, and its p99 no more than the
    # margin above the live colour's.
    latency_rounds: int = 20
    latency_p50_budget_ms: float = 250.0
    latency_p99_budget_ms: float = 500.0
    latency_margin_ms: float = 100.0
    # Notifications: webhook URLs receive start, success, failure and rollback.
    webhooks: tuple[str, ...] = ()
    webhook_style: str = "json"
    # Metrics (Prometheus text format) after every deploy: a file for node_exporter's textfile
    # collector (default <state_dir>/metrics/bluegreen.prom), and a push to a Pushgateway if set.
    metrics_file: Path | None = None
    pushgateway_url: str = ""
    # Secrets: every variable of the stack's environment whose name looks secret (PASSWORD,
    # TOKEN, SECRET, _KEY...) has its value masked in every output (console, event log, webhooks,
    # record, HTML and JUnit reports, metrics); these names (matched ignoring case) are added.
    secret_names: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    # The settings file these came from, for a detached helper process to read them again.
    config_file: Path | None = None

    def services_of(self, colour: Colour) -> tuple[str, ...]:
        return tuple(pattern.format(colour=colour) for pattern in self.colour_services)

    def workers_of(self, colour: Colour) -> tuple[str, ...]:
        return tuple(pattern.format(colour=colour) for pattern in self.workers)

    def release_services_of(self, colour: Colour) -> tuple[str, ...]:
        """Every service of a colour's release: the routed ones, then the workers."""
        return (*self.services_of(colour), *self.workers_of(colour))

    def backends_of(self, colour: Colour) -> tuple[str, ...]:
        return tuple(pattern.format(colour=colour) for pattern in self.router_backends)

    def migrate_service_of(self, colour: Colour) -> str:
        """The service whose image runs the migrations: the setting, else the first colour one."""
        return (self.migrate_service or self.colour_services[0]).format(colour=colour)

    @property
    def has_database(self) -> bool:
        return self.database != "none"

    @property
    def has_migrations(self) -> bool:
        return self.has_database and bool(self.migrate_command)

    @property
    def paths_on_copy(self) -> tuple[str, ...]:
        """What the live colour must answer on the migrated copy."""
        return self.rehearsal_paths or self.critical_paths

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
                f"no {what.replace('_', ' ')} for the {self.database} database: "
                f"{where}bluegreen.{what}"
            )
        return resolved

    def database_name_value(self) -> str:
        """The live database's name, as the settings or the kind's usual variables give it."""
        names, _ = DATABASE_DEFAULTS.get(self.database, ((), ()))
        return self._from_env(self.database_name, names, "database_name")

    def database_user_value(self) -> str:
        """The database user ("" where the kind works as the container's own superuser)."""
        _, names = DATABASE_DEFAULTS.get(self.database, ((), ()))
        if not names and not self.database_user:
            return ""
        return self._from_env(self.database_user, names, "database_user")

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
        if self.tls == "self-signed":
            return self.tls_dir / "ca.pem"
        return self.tls_ca_file

    @property
    def site_pem(self) -> Path:
        """The certificate and key HAProxy serves (made, or copied from the team's files)."""
        return self.tls_dir / "site.pem"

    @property
    def metrics_path(self) -> Path:
        """The textfile for node_exporter: ``metrics_file``, else under the state folder."""
        return self.metrics_file or self.state_dir / "metrics" / "bluegreen.prom"

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
        if self.tls == "off":
            return self.public_http_url
        return f"https://{self.public_host}:{self.port('PUBLIC_HTTPS_PORT')}"

    @property
    def public_http_url(self) -> str:
        return f"http://{self.public_host}:{self.port('PUBLIC_HTTP_PORT')}"

    def preview_url(self, colour: Colour) -> str:
        """The idle-colour route: that colour only, never the live traffic."""
        name = f"PREVIEW_{colour.upper()}_PORT"
        scheme = "http" if self.tls == "off" else "https"
        return f"{scheme}://{self.preview_host}:{self.port(name)}"

    @property
    def swarm(self) -> bool:
        return self.engine == "swarm"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.port('STATS_PORT')}/stats"


_FIELD_TYPES: Final[dict[str, type]] = {
    "compose_files": list,
    "project_name": str,
    "engine": str,
    "build_host": str,
    "preview_host": str,
    "state_dir": str,
    "env_file": str,
    "loadbalancer_service": str,
    "colour_services": list,
    "workers": list,
    "workers_start": str,
    "router_backends": list,
    "database": str,
    "db_service": str,
    "database_name": str,
    "database_user": str,
    "backup_command": list,
    "restore_command": list,
    "migrate_service": str,
    "migrate_command": list,
    "migration_pending_command": list,
    "migration_check_command": list,
    "seed_command": list,
    "critical_paths": list,
    "expected_status": dict,
    "public_host": str,
    "tls": str,
    "tls_cert_file": str,
    "tls_key_file": str,
    "tls_ca_file": str,
    "routes": dict,
    "health_paths": dict,
    "healthy_timeout_s": float,
    "build_timeout_s": float,
    "command_timeout_s": float,
    "backup_dir": str,
    "keep_backups": int,
    "keep_releases": int,
    "gate_suites": list,
    "postdeploy_suite": str,
    "hardening": dict,
    "drain_timeout_s": float,
    "retire_delay_s": float,
    "bake_s": float,
    "webhooks": list,
    "webhook_style": str,
    "metrics_file": str,
    "pushgateway_url": str,
    "secret_names": list,
    "load_users": int,
    "load_user_rps": float,
    "load_window_s": float,
    "load_paths": list,
    "load_failure_budget": int,
    "load_p99_budget_ms": float,
    "rehearsal_env": dict,
    "rehearsal_port": int,
    "rehearsal_paths": list,
    "latency_rounds": int,
    "latency_p50_budget_ms": float,
    "latency_p99_budget_ms": float,
    "latency_margin_ms": float,
}
_NON_NEGATIVE: Final = (
    "retire_delay_s",
    "load_users",
    "load_failure_budget",
    "bake_s",
    "rehearsal_port",
)
_MAY_BE_EMPTY: Final = (
    "webhooks",
    "gate_suites",
    "seed_command",
    "secret_names",
    "workers",
    "backup_command",
    "restore_command",
    "migrate_command",
    "migration_pending_command",
    "migration_check_command",
    "rehearsal_paths",
)
_CHOICES: Final[dict[str, tuple[str, ...]]] = {
    "webhook_style": ("json", "slack"),
    "database": DATABASE_KINDS,
    "tls": TLS_MODES,
    "workers_start": ("after_switch", "with_colour"),
    "engine": ENGINES,
}
_FILES: Final = ("tls_cert_file", "tls_key_file", "tls_ca_file")


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
    values = _validate(table)
    if project_name is not None:
        values["project_name"] = project_name
    values.setdefault("project_name", default_project_name(project_dir))
    if not PROJECT_NAME.fullmatch(values["project_name"]):
        raise ConfigError(
            f"bluegreen.project_name {values['project_name']!r} must be lowercase letters, "
            "digits, '-' or '_', starting with a letter or digit"
        )
    configured = [Path(f) for f in values.pop("compose_files", [])]
    files = compose_files or configured
    if not files:
        files = [Path("docker-compose.blue-green.yml")]
    resolved = tuple(f if f.is_absolute() else project_dir / f for f in files)
    for compose_file in resolved:
        if not compose_file.is_file():
            raise ConfigError(f"compose file not found: {compose_file}")
    state_dir = _under(project_dir, values.pop("state_dir", ".bluegreen"))
    backup_dir = _under(project_dir, values.pop("backup_dir", str(state_dir / "backups")))
    env_file = _under(project_dir, values.pop("env_file", ".env"))
    metrics_file = values.pop("metrics_file", None)
    files_given: dict[str, Any] = {
        key: _under(project_dir, values.pop(key)) for key in _FILES if key in values
    }
    for key, path in files_given.items():
        if not path.is_file():
            raise ConfigError(f"bluegreen.{key}: file not found: {path}")
    _check_combinations(values, files_given)
    env = dict(os.environ if environ is None else environ)
    return StackConfig(
        **files_given,
        project_dir=project_dir,
        compose_files=resolved,
        state_dir=state_dir,
        backup_dir=backup_dir,
        env_file=env_file,
        metrics_file=_under(project_dir, metrics_file) if metrics_file else None,
        env=env,
        config_file=source,
        **values,
    )


def default_project_name(project_dir: Path) -> str:
    """The project folder's name as a Compose project name: lowercase, [a-z0-9_-]."""
    name = re.sub(r"[^a-z0-9_-]+", "-", project_dir.name.lower()).strip("-_")
    return name or "bluegreen"


def _check_combinations(values: dict[str, Any], files: dict[str, Any]) -> None:
    """Settings that only make sense together: one line naming what is missing."""
    tls = values.get("tls", "self-signed")
    if tls == "files" and not {"tls_cert_file", "tls_key_file"} <= files.keys():
        raise ConfigError("bluegreen.tls = 'files' needs tls_cert_file and tls_key_file")
    if tls != "files" and files.keys() & {"tls_cert_file", "tls_key_file"}:
        raise ConfigError("bluegreen.tls_cert_file and tls_key_file need tls = 'files'")
    if values.get("database") == "commands":
        if not values.get("backup_command") or not values.get("database_name"):
            raise ConfigError(
                "bluegreen.database = 'commands' needs backup_command and database_name"
            )
        if values.get("migrate_command") and not values.get("restore_command"):
            raise ConfigError(
                "bluegreen.migrate_command with database = 'commands' needs restore_command: "
                "the rehearsal restores the backup into a scratch server first"
            )
    if values.get("database", "none") == "none" and values.get("migrate_command"):
        raise ConfigError(
            "bluegreen.migrate_command needs a database: set bluegreen.database (postgres, "
            "mysql or commands)"
        )
    routed = values.get("colour_services", ("web-{colour}",))
    backends = values.get("router_backends", ("web_{colour}",))
    if len(backends) > len(routed):
        raise ConfigError(
            "bluegreen.router_backends has more entries than colour_services (one backend per "
            "routed service; workers have none)"
        )


def _under(project_dir: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else project_dir / path


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


def _validate(table: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, raw in table.items():
        value: Any = raw
        expected = _FIELD_TYPES.get(key)
        if expected is None:
            known = ", ".join(sorted(_FIELD_TYPES))
            raise ConfigError(f"unknown key bluegreen.{key} (known keys: {known})")
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(raw if expected is not float else value, expected) or isinstance(
            value, bool
        ):
            raise ConfigError(
                f"bluegreen.{key} must be a {expected.__name__}, not {type(value).__name__} "
                f"({value!r})"
            )
        if expected is dict:
            value = _validate_table(key, value)
        if expected is list:
            may_be_empty = key in _MAY_BE_EMPTY
            if (not value and not may_be_empty) or not all(
                isinstance(item, str) and item for item in value
            ):
                raise ConfigError(f"bluegreen.{key} must be a non-empty list of strings")
            if key == "webhooks" and not all(_is_http_url(u) for u in value):
                raise ConfigError(f"bluegreen.{key}: every URL must start with http:// or https://")
            if key in ("colour_services", "router_backends", "workers") and not all(
                "{colour}" in item for item in value
            ):
                raise ConfigError(f"bluegreen.{key}: every entry must contain '{{colour}}'")
            if key in ("critical_paths", "load_paths", "rehearsal_paths") and not all(
                p.startswith("/") for p in value
            ):
                raise ConfigError(f"bluegreen.{key}: every path must start with '/'")
            if key == "secret_names":
                wrong = next((name for name in value if not ENV_NAME.fullmatch(name)), None)
                if wrong is not None:
                    raise ConfigError(
                        f"bluegreen.{key}: {wrong!r} is not an environment variable name "
                        "(letters, digits and '_', not starting with a digit)"
                    )
            value = value if key == "compose_files" else tuple(value)
        if expected in (float, int) and (value < 0 or (value == 0 and key not in _NON_NEGATIVE)):
            raise ConfigError(f"bluegreen.{key} must be positive, not {value!r}")
        if key == "pushgateway_url" and value and not _is_http_url(value):
            raise ConfigError(f"bluegreen.{key} must start with http:// or https://")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"bluegreen.{key} must be one of {', '.join(_CHOICES[key])}")
        values[key] = value
    return values


def _validate_table(key: str, table: dict[str, Any]) -> dict[str, Any]:
    """A settings table: string keys, and values of the type (and range) the key wants."""
    want: type = int if key == "expected_status" else str
    for name, value in table.items():
        if not isinstance(value, want) or isinstance(value, bool):
            raise ConfigError(
                f"bluegreen.{key}.{name} must be a {want.__name__}, not {type(value).__name__}"
            )
    if key == "expected_status":
        wrong = next((p for p, code in table.items() if not 100 <= code <= 599), None)
        if wrong is not None:
            raise ConfigError(f"bluegreen.expected_status.{wrong} must be an HTTP status (100-599)")
    if key in ("expected_status", "routes", "health_paths"):
        paths = table if key == "expected_status" else table.values()
        bad = next((p for p in paths if not p.startswith("/")), None)
        if bad is not None:
            raise ConfigError(f"bluegreen.{key}: every path must start with '/', not {bad!r}")
    if key == "hardening":
        for name, mode in table.items():
            if name not in HARDENING_DEFAULTS:
                raise ConfigError(
                    f"unknown hardening check bluegreen.hardening.{name} (known: "
                    f"{', '.join(HARDENING_DEFAULTS)})"
                )
            if mode not in ("gate", "warn", "off"):
                raise ConfigError(f"bluegreen.hardening.{name} must be gate, warn or off")
        return {**HARDENING_DEFAULTS, **table}
    if key == "rehearsal_env":
        wrong = next((n for n in table if not ENV_NAME.fullmatch(n)), None)
        if wrong is not None:
            raise ConfigError(f"bluegreen.rehearsal_env: {wrong!r} is not a variable name")
    return dict(table)


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
