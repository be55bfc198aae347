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
# The endpoints the design document checks; the reference app serves all of them.
DESIGN_CRITICAL_PATHS: Final = (
    "/",
    "/aptos",
    "/builders",
    "/api/v1/aptos/",
    "/api/v1/builders/",
    "/admin/",
    "/health",
    "/api/v1/health",
)

# The environment variables that move the ports the reference stack publishes, and their
# defaults: named in the error when one of them is taken.
PORT_SETTINGS: Final = {
    "PUBLIC_HTTP_PORT": 80,
    "PUBLIC_HTTPS_PORT": 443,
    "PREVIEW_BLUE_PORT": 8441,
    "PREVIEW_GREEN_PORT": 8442,
    "STATS_PORT": 8404,
}

# Where the admin socket and the map file live inside the loadbalancer container.
LB_STATE_IN_CONTAINER: Final = "/var/lib/bluegreen"


@dataclass(frozen=True, slots=True)
class StackConfig:
    """Everything needed to drive one blue-green stack."""

    project_dir: Path
    compose_files: tuple[Path, ...] = ()
    project_name: str = "aptos"
    state_dir: Path = Path(".bluegreen")
    env_file: Path = Path(".env")
    db_service: str = "db"
    loadbalancer_service: str = "loadbalancer"
    # Service name patterns of one colour; "{colour}" is replaced by blue or green.
    colour_services: tuple[str, ...] = ("backend-{colour}", "frontend-{colour}")
    # The service whose image runs the schema migrations (and, on an empty host, the seed data).
    migrate_service: str = "backend-{colour}"
    migrate_command: tuple[str, ...] = ("python3", "manage.py", "migrate", "--noinput")
    seed_command: tuple[str, ...] = ("python3", "manage.py", "seed_aptos")
    # Paths every colour must serve; checked by the smoke and post-deploy suites and a rollback.
    critical_paths: tuple[str, ...] = (
        DESIGN_CRITICAL_PATHS  # HAProxy backends that serve one colour, checked before a switch.
    )
    router_backends: tuple[str, ...] = ("api_{colour}", "web_{colour}")
    public_host: str = "localhost"
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
    # Suites (paths under the project) that gate the switch, and the post-switch suite.
    gate_suites: tuple[str, ...] = (
        "suites/migration",
        "suites/smoke",
        "suites/infra",
        "suites/latency",
    )
    postdeploy_suite: str = "suites/postdeploy"
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
    load_paths: tuple[str, ...] = ("/api/v1/health", "/api/v1/aptos/", "/")
    load_failure_budget: int = 0
    load_p99_budget_ms: float = 100.0
    # Migration rehearsal (suites/migration): the new release's migrations run on a scratch copy
    # of the backup first, with these commands in the migrate service's image, the database
    # name passed in ``database_name_env``; then the live colour's migrate service runs on that
    # copy (port ``rehearsal_port``) and must still answer ``rehearsal_paths``.
    migration_plan_command: tuple[str, ...] = ("python3", "manage.py", "showmigrations", "--plan")
    migration_check_command: tuple[str, ...] = (
        "python3",
        "manage.py",
        "makemigrations",
        "--check",
        "--dry-run",
    )
    database_name_env: str = "POSTGRES_DB"
    rehearsal_port: int = 8000
    rehearsal_paths: tuple[str, ...] = ("/api/v1/health", "/api/v1/aptos/", "/api/v1/builders/")
    # Latency gate (suites/latency): each critical path this many times on the new colour and
    # on the live one, interleaved; p50 and p99 of the new one within budget, and its p99 no
    # more than the margin above the live colour's (default budget: the design's 500 ms).
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

    def backends_of(self, colour: Colour) -> tuple[str, ...]:
        return tuple(pattern.format(colour=colour) for pattern in self.router_backends)

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
    def ca_file(self) -> Path:
        """The stack's self-signed certificate, for clients to verify HTTPS against."""
        return self.tls_dir / "ca.pem"

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
        return f"https://{self.public_host}:{self.port('PUBLIC_HTTPS_PORT')}"

    @property
    def public_http_url(self) -> str:
        return f"http://{self.public_host}:{self.port('PUBLIC_HTTP_PORT')}"

    def preview_url(self, colour: Colour) -> str:
        """The idle-colour route: that colour only, never the live traffic."""
        name = f"PREVIEW_{colour.upper()}_PORT"
        return f"https://127.0.0.1:{self.port(name)}"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.port('STATS_PORT')}/stats"


_FIELD_TYPES: Final[dict[str, type]] = {
    "compose_files": list,
    "project_name": str,
    "state_dir": str,
    "env_file": str,
    "db_service": str,
    "loadbalancer_service": str,
    "colour_services": list,
    "migrate_service": str,
    "migrate_command": list,
    "seed_command": list,
    "critical_paths": list,
    "router_backends": list,
    "public_host": str,
    "healthy_timeout_s": float,
    "build_timeout_s": float,
    "command_timeout_s": float,
    "backup_dir": str,
    "keep_backups": int,
    "keep_releases": int,
    "gate_suites": list,
    "postdeploy_suite": str,
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
    "migration_plan_command": list,
    "migration_check_command": list,
    "database_name_env": str,
    "rehearsal_port": int,
    "rehearsal_paths": list,
    "latency_rounds": int,
    "latency_p50_budget_ms": float,
    "latency_p99_budget_ms": float,
    "latency_margin_ms": float,
}
_NON_NEGATIVE: Final = ("retire_delay_s", "load_users", "load_failure_budget", "bake_s")
_CHOICES: Final[dict[str, tuple[str, ...]]] = {"webhook_style": ("json", "slack")}


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
    if not PROJECT_NAME.fullmatch(values.get("project_name", "aptos")):
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
    env = dict(os.environ if environ is None else environ)
    return StackConfig(
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
        if expected is list:
            may_be_empty = key in ("webhooks", "gate_suites", "seed_command", "secret_names")
            if (not value and not may_be_empty) or not all(
                isinstance(item, str) and item for item in value
            ):
                raise ConfigError(f"bluegreen.{key} must be a non-empty list of strings")
            if key == "webhooks" and not all(_is_http_url(u) for u in value):
                raise ConfigError(f"bluegreen.{key}: every URL must start with http:// or https://")
            if key in ("colour_services", "router_backends") and not all(
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
