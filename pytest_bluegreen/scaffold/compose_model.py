"""A team's one-colour Compose file as ``bluegreen init`` reads it: what each service is, and why.

Everything here works on the output of ``compose config --no-interpolate``, so ``${VARS}`` stay
references and no value of the stack's ``.env`` is copied; the raw files are read only to learn
which variables a service declares itself (Compose inlines ``env_file`` contents into
``environment``, values and all). Pure functions: no Docker, no files.

The classification rule (``bluegreen init`` prints, one line per service, which one applied):

* a service only in a Compose profile is optional and left alone;
* when the settings already name ``services.colours`` or ``services.workers``, those
  (``<service>-{colour}``) are the per-colour services and every other one is shared;
* otherwise a service is per-colour when it has ``build:`` (the team's code) and nothing in its
  name, image or build context says database, cache or queue (:data:`INFRA_PRODUCTS` anywhere,
  :data:`INFRA_WORDS` as a whole word); every other service is shared;
* a per-colour service with ``ports`` or ``expose`` is routed (HTTP behind HAProxy, on the
  container port of its first published port), one without is a worker;
* the database is the first shared service whose name, image or build context says postgres or
  mysql/mariadb, else the first whose environment has ``POSTGRES_*`` or ``MYSQL_*``/``MARIADB_*``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pytest_bluegreen.core.colours import COLOURS, Colour
from pytest_bluegreen.core.errors import BluegreenError

Role = Literal["routed", "worker", "shared", "optional"]

# Data stores, caches and brokers: a service built from one of these is shared, not per colour.
INFRA_PRODUCTS: Final = (
    "postgres", "postgis", "timescale", "mysql", "mariadb", "percona", "redis", "valkey", "keydb",
    "memcached", "rabbitmq", "mongo", "elasticsearch", "opensearch", "kafka", "zookeeper", "nats",
    "minio", "clickhouse", "cassandra", "couchdb", "influxdb",
)  # fmt: skip
# The same, as whole words only: "db" must not catch "feedback".
INFRA_WORDS: Final = frozenset({"db", "database", "cache", "queue", "broker", "mq"})
DATABASE_PRODUCTS: Final = {
    "postgres": ("postgres", "postgis", "timescale"),
    "mysql": ("mysql", "mariadb", "percona"),
}
DATABASE_ENV: Final = {"postgres": ("POSTGRES_",), "mysql": ("MYSQL_", "MARIADB_")}
DEFAULT_HEALTH_PATH: Final = "/health"
LOCAL_URL: Final = re.compile(
    r"https?://(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(?::\d+)?(/[^\s'\"|;&)]*)"
)
VARIABLE_PORT: Final = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>\d+))?\}")


class ScaffoldError(BluegreenError):
    """The Compose file or the settings cannot be adopted as they are; the message says why."""


@dataclass(frozen=True, slots=True)
class PortBinding:
    """One ``ports:`` entry as written: host address and port may be ``${VARS}``."""

    host_ip: str  # "" when the entry names none
    published: str  # "" when only a container port is given
    target: int | None


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """What init decided about one service, and why (printed one line per service)."""

    name: str
    role: Role
    reason: str
    container_port: int | None = None
    binding: PortBinding | None = None
    database: str = ""  # "postgres" or "mysql" for the database service

    @property
    def per_colour(self) -> bool:
        return self.role in ("routed", "worker")


@dataclass(frozen=True, slots=True)
class PublicPort:
    """Where the loadbalancer publishes the public frontend: the routed service's old port."""

    host_ip: str
    port: int
    note: str = ""


@dataclass(frozen=True, slots=True)
class StackPlan:
    """The whole decision: roles, database, routes, health paths, TLS and the public port."""

    services: tuple[ServicePlan, ...]
    database: str
    db_service: str
    routes: dict[str, str]  # routed service -> path prefix
    health_paths: dict[str, str]  # routed service -> path HAProxy checks
    tls: str
    public: PublicPort
    notes: tuple[str, ...] = ()  # what the user should look at
    health_inferred: frozenset[str] = field(default_factory=frozenset)

    def of_role(self, *roles: Role) -> list[ServicePlan]:
        return [s for s in self.services if s.role in roles]

    @property
    def routed(self) -> list[str]:
        return [s.name for s in self.of_role("routed")]

    @property
    def workers(self) -> list[str]:
        return [s.name for s in self.of_role("worker")]

    @property
    def per_colour(self) -> list[str]:
        return [s.name for s in self.services if s.per_colour]

    @property
    def unrouted(self) -> list[str]:
        return [name for name in self.routed if name not in self.routes]


@dataclass(frozen=True, slots=True)
class EnvDeclaration:
    """The variables a service declares in the raw files, and its ``env_file`` entries."""

    keys: frozenset[str] = frozenset()
    env_files: tuple[Any, ...] = ()


def colour_pattern(service: str) -> str:
    return f"{service}-{{colour}}"


def colour_service(service: str, colour: Colour) -> str:
    return f"{service}-{colour}"


def backend_pattern(service: str) -> str:
    """HAProxy's backend of a routed service: its name, dashes as underscores, and the colour."""
    return f"{service.replace('-', '_')}_{{colour}}"


def backend_name(service: str, colour: str) -> str:
    """A colour's backend; ``colour`` may be HAProxy's ``%[var(txn.colour)]``."""
    return backend_pattern(service).format(colour=colour)


def service_of_pattern(pattern: str, services: Iterable[str], key: str) -> str:
    """``web-{colour}`` -> ``web``, which must be a service of the team's file."""
    known = set(services)
    base = pattern.removesuffix("-{colour}")
    if base == pattern or "{" in base:
        raise ScaffoldError(
            f"bluegreen.{key} entry {pattern!r}: init makes the colours of a service S as "
            "'S-blue' and 'S-green', so the entry must be 'S-{colour}'"
        )
    if base not in known:
        raise ScaffoldError(
            f"bluegreen.{key} entry {pattern!r} names {base!r}, which is not one of "
            f"{', '.join(sorted(known))}"
        )
    return base


# ---- reading one service --------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]


def _build_context(spec: Mapping[str, Any]) -> str:
    build = spec.get("build")
    if isinstance(build, str):
        return build
    if isinstance(build, Mapping):
        return f"{build.get('context') or ''} {build.get('dockerfile') or ''}"
    return ""


def _identity(name: str, spec: Mapping[str, Any]) -> dict[str, str]:
    """What says what a service is: its name, image and build context.

    An absolute context (outside the project) counts by its last folder only: the folders
    above it ("/srv/db-team/...") say nothing about the service.
    """
    build = _build_context(spec)
    if build.startswith("/"):
        context, _, dockerfile = build.partition(" ")
        build = f"{context.rstrip('/').rsplit('/', 1)[-1]} {dockerfile}"
    return {"name": name, "image": str(spec.get("image") or ""), "build": build}


def infra_hint(name: str, spec: Mapping[str, Any]) -> str:
    """Why a service looks like a database, cache or queue ("" when it does not)."""
    for where, text in _identity(name, spec).items():
        lowered = text.lower()
        product = next((p for p in INFRA_PRODUCTS if p in lowered), None)
        if product:
            return f"{product!r} in its {where}"
        word = next((w for w in _words(text) if w in INFRA_WORDS), None)
        if word:
            return f"{word!r} in its {where}"
    return ""


def database_kind(name: str, spec: Mapping[str, Any], by_environment: bool) -> str:
    """``postgres``, ``mysql`` or "": by name, image or build context, else by environment."""
    if not by_environment:
        text = " ".join(_identity(name, spec).values()).lower()
        for kind, products in DATABASE_PRODUCTS.items():
            if any(p in text for p in products):
                return kind
        return ""
    keys = list(environment_of(spec))
    for kind, prefixes in DATABASE_ENV.items():
        if any(k.startswith(prefixes) for k in keys):
            return kind
    return ""


def environment_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A service's ``environment`` as a mapping, whether written as a mapping or a list."""
    raw = spec.get("environment") or {}
    if isinstance(raw, Mapping):
        return dict(raw)
    env: dict[str, Any] = {}
    for item in raw:
        key, sep, value = str(item).partition("=")
        env[key] = value if sep else None
    return env


def _split_colons(text: str) -> list[str]:
    """Split on ':' outside ``${...}``: ``${BIND:-0.0.0.0}:8080:80`` has three parts."""
    parts, current, depth = [], "", 0
    for i, char in enumerate(text):
        if char == "{" and text[i - 1 : i] == "$":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        if char == ":" and not depth:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def _port_number(raw: object) -> int | None:
    text = str(raw).split("/")[0].split("-")[0].strip()
    return int(text) if text.isdigit() else None


def parse_port(raw: object) -> PortBinding:
    """A ``ports:`` entry, long (mapping) or short (``[ip:]published:target[/proto]``) form."""
    if isinstance(raw, Mapping):
        published = raw.get("published")
        return PortBinding(
            str(raw.get("host_ip") or ""),
            "" if published is None else str(published),
            _port_number(raw.get("target")),
        )
    parts = _split_colons(str(raw).rsplit("/", 1)[0] if "/" in str(raw) else str(raw))
    target = _port_number(parts[-1])
    if len(parts) == 1:
        return PortBinding("", "", target)
    host_ip = ":".join(parts[:-2]).strip("[]")
    return PortBinding(host_ip, parts[-2], target)


def http_port(spec: Mapping[str, Any]) -> tuple[int | None, PortBinding | None]:
    """The container port HAProxy talks to, and the ports entry it comes from.

    The target of the first ``ports`` entry (whose host side becomes the public port), else the
    first ``expose`` entry.
    """
    ports = spec.get("ports") or []
    if ports:
        binding = parse_port(ports[0])
        return binding.target, binding
    expose = spec.get("expose") or []
    return (_port_number(expose[0]) if expose else None), None


def health_path_of(spec: Mapping[str, Any]) -> str:
    """The path of a ``http://localhost...`` URL in the service's healthcheck ("" if none)."""
    test = (spec.get("healthcheck") or {}).get("test") or ""
    text = " ".join(str(t) for t in test) if isinstance(test, list) else str(test)
    match = LOCAL_URL.search(text)
    return match.group(1) if match else ""


# ---- classification -------------------------------------------------------------------------


def classify(
    services: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
    tls: str = "self-signed",
) -> StackPlan:
    """Decide every service's role, the database, routes, health paths and the public port."""
    settings = settings or {}
    names = list(services)
    for reserved in ("loadbalancer", *(colour_service(n, c) for n in names for c in COLOURS)):
        if reserved in services:
            raise ScaffoldError(
                f"the Compose file already has a service {reserved!r}: bluegreen init adds it; "
                "it reads a one-colour Compose file (rename that service)"
            )
    forced_routed = [
        service_of_pattern(p, names, "services.colours")
        for p in settings.get("services.colours", ())
    ]
    forced_workers = [
        service_of_pattern(p, names, "services.workers")
        for p in settings.get("services.workers", ())
    ]
    by_settings = bool(forced_routed or forced_workers)
    plans = [
        _plan_service(name, spec, forced_routed, forced_workers, by_settings)
        for name, spec in services.items()
    ]
    for plan in plans:
        if plan.per_colour and services[plan.name].get("network_mode") == "host":
            raise ScaffoldError(
                f"{plan.name} runs on the host's network: its two colours would bind the same "
                "ports, and HAProxy could not tell them apart; give it a Compose network (and "
                "ports), or name it in neither bluegreen.services.colours nor workers"
            )
    routed = [p for p in plans if p.role == "routed"]
    if not routed:
        raise ScaffoldError(
            "no service to route to: a per-colour service (one with build:) needs published "
            "ports or expose; add one, or name it in bluegreen.services.colours"
        )
    database, db_service, plans = _database(services, plans, settings)
    routes, notes = _routes([p.name for p in routed], settings)
    health, inferred, health_notes = _health_paths(services, [p.name for p in routed], settings)
    public = _public_port(routed, routes, tls)
    warnings = [*notes, *health_notes, *_dependency_notes(services, plans)]
    if public.note:
        warnings.append(public.note)
    return StackPlan(
        services=tuple(plans),
        database=database,
        db_service=db_service,
        routes=routes,
        health_paths=health,
        tls=tls,
        public=public,
        notes=tuple(warnings),
        health_inferred=frozenset(inferred),
    )


def _plan_service(
    name: str,
    spec: Mapping[str, Any],
    forced_routed: Sequence[str],
    forced_workers: Sequence[str],
    by_settings: bool,
) -> ServicePlan:
    port, binding = http_port(spec)
    port_text = _port_text(port, binding)
    if spec.get("profiles"):
        profiles = ", ".join(spec["profiles"])
        return ServicePlan(name, "optional", f"left alone: only in profile(s) {profiles}")
    if name in forced_routed:
        if port is None:
            raise ScaffoldError(
                f"bluegreen.services.colours names {name!r}, which has no port HAProxy could "
                "reach: give it ports or expose (or list it in workers)"
            )
        return ServicePlan(
            name,
            "routed",
            f"per colour, routed: named in services.colours ({port_text})",
            port,
            binding,
        )
    if name in forced_workers:
        return ServicePlan(name, "worker", "per colour, worker: named in workers")
    if by_settings:
        return ServicePlan(name, "shared", "shared: not in services.colours or services.workers")
    if "build" not in spec:
        return ServicePlan(name, "shared", f"shared: image only ({spec.get('image') or '?'})")
    hint = infra_hint(name, spec)
    if hint:
        return ServicePlan(
            name, "shared", f"shared: has build: but looks like a database/cache/queue ({hint})"
        )
    if port is None:
        return ServicePlan(name, "worker", "per colour, worker: has build: and no port")
    return ServicePlan(
        name, "routed", f"per colour, routed: has build: and {port_text}", port, binding
    )


def _port_text(port: int | None, binding: PortBinding | None) -> str:
    if binding is not None and binding.published:
        return f"publishes {binding.published} -> container port {port}"
    return f"container port {port}"


def _database(
    services: Mapping[str, Mapping[str, Any]],
    plans: list[ServicePlan],
    settings: Mapping[str, Any],
) -> tuple[str, str, list[ServicePlan]]:
    if "database.kind" in settings:
        kind = str(settings["database.kind"])
        service = str(settings.get("database.service") or "db") if kind != "none" else ""
        how = "bluegreen.database.kind"
    else:
        kind, service, how = "none", "", ""
        shared = [p.name for p in plans if p.role == "shared"]
        for by_env in (False, True):
            found = next(
                (
                    (k, name)
                    for name in shared
                    if (k := database_kind(name, services[name], by_environment=by_env))
                ),
                None,
            )
            if found:
                kind, service = found
                how = "its environment" if by_env else "its name, image or build context"
                break
    if not service:
        return kind, service, plans
    updated = [
        ServicePlan(p.name, p.role, f"{p.reason}; the database ({kind}, by {how})", database=kind)
        if p.name == service
        else p
        for p in plans
    ]
    return kind, service, updated


def _routes(routed: list[str], settings: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    configured = dict(settings.get("router.routes") or {})
    if configured:
        routes = {
            service_of_pattern(pattern, routed, "router.routes"): prefix
            for pattern, prefix in configured.items()
        }
        missing = [s for s in routed if s not in routes]
        notes = [
            f"{s}: no public route (bluegreen.router.routes names none for {colour_pattern(s)}); "
            "reachable through its backend only"
            for s in missing
        ]
        return routes, notes
    routes = {routed[0]: "/"}
    notes = [
        f"{s}: no public route yet: HAProxy sends every path to {routed[0]}; set "
        f'routes = {{ "{colour_pattern(routed[0])}" = "/", "{colour_pattern(s)}" = "/{s}/" }} '
        "(its path prefix) in the settings and run bluegreen init --force"
        for s in routed[1:]
    ]
    return routes, notes


def _health_paths(
    services: Mapping[str, Mapping[str, Any]], routed: list[str], settings: Mapping[str, Any]
) -> tuple[dict[str, str], list[str], list[str]]:
    configured = {
        service_of_pattern(p, routed, "router.health_paths"): path
        for p, path in (settings.get("router.health_paths") or {}).items()
    }
    health: dict[str, str] = {}
    inferred: list[str] = []
    notes: list[str] = []
    for name in routed:
        if name in configured:
            health[name] = configured[name]
        elif path := health_path_of(services[name]):
            health[name] = path
            inferred.append(name)
        else:
            health[name] = DEFAULT_HEALTH_PATH
            notes.append(
                f"{name}: HAProxy checks GET {DEFAULT_HEALTH_PATH} (its Compose healthcheck "
                "names no HTTP URL to read one from); set bluegreen.router.health_paths "
                f'{{ "{colour_pattern(name)}" = "/your/health" }} if it answers elsewhere'
            )
    return health, inferred, notes


def _public_port(routed: list[ServicePlan], routes: Mapping[str, str], tls: str) -> PublicPort:
    fallback = 80 if tls == "off" else 443
    setting = "PUBLIC_HTTP_PORT" if tls == "off" else "PUBLIC_HTTPS_PORT"
    ordered = sorted(routed, key=lambda p: routes.get(p.name) != "/")
    with_port = [p for p in ordered if p.binding is not None and p.binding.published]
    if not with_port:
        return PublicPort(
            "", fallback, f"no routed service publishes a port: HAProxy on {fallback}"
        )
    first = with_port[0]
    assert first.binding is not None
    published = first.binding.published
    others = [p.name for p in with_port[1:]]
    note = (
        f"the public port serves every routed service ({', '.join(others)} included, by path); "
        "their own host ports are no longer published"
        if others
        else ""
    )
    if published.isdigit():
        return PublicPort(first.binding.host_ip, int(published), note)
    match = VARIABLE_PORT.fullmatch(published)
    default = int(match["default"]) if match and match["default"] else fallback
    variable = f"${{{match['name']}}}" if match else published
    moved = (
        f"{first.name} publishes {published}: the loadbalancer publishes {setting} (default "
        f"{default}) instead; set {setting} where you set {variable}"
    )
    return PublicPort(first.binding.host_ip, default, "; ".join(filter(None, [moved, note])))


def _dependency_notes(
    services: Mapping[str, Mapping[str, Any]], plans: list[ServicePlan]
) -> list[str]:
    """Shared services that name a per-colour one: they would reach neither colour."""
    per_colour = {p.name for p in plans if p.per_colour}
    notes = []
    for p in plans:
        if p.per_colour or p.role == "optional":
            continue
        spec = services[p.name]
        named = set(_dependencies(spec)) | {str(x).split(":")[0] for x in spec.get("links") or ()}
        for other in sorted(named & per_colour):
            notes.append(
                f"{p.name} (shared) depends on {other} (per colour): the original {other} no "
                f"longer starts; point {p.name} at the loadbalancer or list it per colour"
            )
    return notes


def _dependencies(spec: Mapping[str, Any]) -> list[str]:
    raw = spec.get("depends_on") or []
    return list(raw) if isinstance(raw, Mapping) else [str(x) for x in raw]


# ---- the raw files: what a service declares itself -------------------------------------------


def declared_environment(raw_files: Sequence[Mapping[str, Any]], service: str) -> EnvDeclaration:
    """The ``environment`` keys and ``env_file`` entries a service's raw definitions write.

    Followed through ``extends`` within the same file. Keys Compose added from an env file are
    not among them: their values must never be copied, the env file is named instead.
    """
    keys: set[str] = set()
    env_files: list[Any] = []
    for doc in raw_files:
        services = doc.get("services") or {}
        seen: set[str] = set()
        name: str | None = service
        while name and name in services and name not in seen:
            seen.add(name)
            spec = services[name] or {}
            keys.update(environment_of(spec))
            raw_env_file = spec.get("env_file")
            if raw_env_file:
                entries = raw_env_file if isinstance(raw_env_file, list) else [raw_env_file]
                env_files.extend(e for e in entries if e not in env_files)
            extends = spec.get("extends")
            name = extends if isinstance(extends, str) else None
            if isinstance(extends, Mapping) and not extends.get("file"):
                name = extends.get("service")
    return EnvDeclaration(frozenset(keys), tuple(env_files))
