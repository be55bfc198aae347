"""``bluegreen init`` and ``doctor`` without Docker: classification, the generated files, safety.

Compose is a fake that does what ``docker-compose config --no-interpolate`` (v1) does to a file:
services merged across files, build contexts made absolute, and env files' values inlined into
``environment`` (the reason init must never copy ``environment`` blindly).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml

from pytest_bluegreen.cli import main
from pytest_bluegreen.core.config import as_written, load_config
from pytest_bluegreen.core.errors import DockerUnavailable
from pytest_bluegreen.scaffold import doctor, source
from pytest_bluegreen.scaffold.compose_model import (
    PortBinding,
    ScaffoldError,
    StackPlan,
    classify,
    environment_of,
    health_path_of,
    infra_hint,
    parse_port,
)
from pytest_bluegreen.scaffold.haproxy_cfg import render_haproxy_cfg
from pytest_bluegreen.scaffold.init import run_init, stored_digest
from pytest_bluegreen.scaffold.override import Layout, build_override, relative_layout
from pytest_bluegreen.scaffold.settings_toml import render_settings, settings_for
from pytest_bluegreen.scaffold.source import OVERRIDE, env_values

V1 = ("docker-compose",)


# ---- a fake Compose v1 ----------------------------------------------------------------------


class Refused(Exception):
    """What Compose v1 says of a ${VARIABLE} where its schema wants a number."""


def fake_config(argv: list[str]) -> str:
    """What ``docker-compose -f ... config --no-interpolate`` prints for those files."""
    files = [Path(argv[i + 1]) for i, arg in enumerate(argv) if arg == "-f"]
    given = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--project-directory"]
    base = Path(given[0]) if given else files[0].parent
    services: dict[str, dict[str, Any]] = {}
    refused = []
    for path in files:
        doc = yaml.safe_load(path.read_text()) or {}
        for name, spec in (doc.get("services") or {}).items():
            if any("${" in str(p) for p in (spec or {}).get("ports") or ()):
                refused.append(f"services.{name}.ports contains an invalid type, it should be")
            retries = ((spec or {}).get("healthcheck") or {}).get("retries")
            if "${" in str(retries):
                refused.append(f"services.{name}.healthcheck.retries contains an invalid type")
            services.setdefault(name, {}).update(copy.deepcopy(spec or {}))
    if refused:
        raise Refused("\n".join(["The Compose file is invalid because:", *refused]))
    for spec in services.values():
        build = spec.get("build")
        if isinstance(build, str):
            spec["build"] = {"context": str((base / build).resolve())}
        elif isinstance(build, dict):
            build["context"] = str((base / build.get("context", ".")).resolve())
        env = environment_of(spec)
        entries = spec.pop("env_file", [])
        for entry in entries if isinstance(entries, list) else [entries]:
            for key, value in env_values(base / entry).items():
                env.setdefault(key, value)
        if env:
            spec["environment"] = env
    return yaml.safe_dump({"services": dict(sorted(services.items())), "version": "3.9"})


def interpolated(text: str, env: dict[str, str]) -> str:
    """``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` as Compose fills them in."""
    pattern = r"\$\{(\w+)(?::?([-?])([^}]*))?\}"
    return re.sub(pattern, lambda m: env.get(m[1]) or (m[3] if m[2] == "-" else ""), text)


def fake_compose(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    if "config" not in argv:
        return subprocess.CompletedProcess(argv, 1, "", "unexpected")
    try:
        if "--no-interpolate" not in argv:
            env = kwargs.get("env") or {}
            paths = [Path(argv[i + 1]) for i, arg in enumerate(argv) if arg == "-f"]
            with tempfile.TemporaryDirectory() as folder:
                copies = []
                for number, path in enumerate(paths):
                    copy_path = Path(folder) / f"{number}.yml"
                    copy_path.write_text(interpolated(path.read_text(), env))
                    copies.append(copy_path)
                given = ["--project-directory", str(paths[0].parent)]
                argv = [
                    a if a not in map(str, paths) else str(copies[paths.index(Path(a))])
                    for a in argv
                ]
                return subprocess.CompletedProcess(argv, 0, fake_config([*argv, *given]), "")
        return subprocess.CompletedProcess(argv, 0, fake_config(argv), "")
    except yaml.YAMLError as exc:
        return subprocess.CompletedProcess(argv, 1, "", f"ERROR: invalid:\n{exc}")
    except Refused as exc:
        return subprocess.CompletedProcess(argv, 1, "", str(exc))


def project(tmp_path: Path, compose: str, env: str = "", name: str = "shop") -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "docker-compose.yml").write_text(compose)
    if env:
        (root / ".env").write_text(env)
    return root


def do_init(root: Path, **kwargs: Any) -> list[str]:
    lines: list[str] = []
    run_init(root, say=lines.append, command=V1, run=fake_compose, **kwargs)
    return lines


def generated_texts(root: Path) -> dict[str, str]:
    paths = [root / OVERRIDE, *sorted((root / "bluegreen/haproxy").iterdir())]
    paths.append(root / "bluegreen.toml")
    return {str(p.relative_to(root)): p.read_text() for p in paths if p.is_file()}


# ---- realistic stacks -------------------------------------------------------------------------

NODE_REDIS = """
services:
  web:
    build: .
    ports: ["3000:3000"]
    environment:
      REDIS_URL: redis://redis:6379
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://localhost:3000/healthz"]
    depends_on: [redis]
  redis:
    image: redis:7-alpine
"""

PYTHON_MARIADB_WORKER = """
services:
  app:
    build:
      context: .
      dockerfile: Dockerfile
    ports: ["127.0.0.1:8000:8000"]
    env_file: app.env
    environment:
      DATABASE_HOST: mariadb
      DATABASE_PASSWORD: ${DB_PASSWORD}
    depends_on: [mariadb]
  worker:
    build: .
    command: celery -A app worker
    env_file: app.env
    depends_on: [mariadb, app]
  mariadb:
    image: mariadb:11
    environment:
      MARIADB_ROOT_PASSWORD: ${DB_PASSWORD}
      MARIADB_DATABASE: shop
    volumes: [dbdata:/var/lib/mysql]
volumes:
  dbdata: {}
"""

POSTGRES_BUILT_LOCALLY = """
services:
  db:
    build: ./db
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
      POSTGRES_DB: blog
  feedback:
    build: ./feedback
    ports: ["8080:8000"]
    container_name: feedback
    environment:
      POSTGRES_HOST: db
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
    healthcheck:
      test: curl -fsS http://127.0.0.1:8000/api/health || exit 1
    volumes: ["./media:/srv/media"]
  monitoring:
    build: ./monitoring
    profiles: [monitoring]
    ports: ["9090:9090"]
"""

TWO_ROUTED = """
services:
  frontend:
    build: ./frontend
    ports: ["80:3000"]
    environment:
      API_URL: http://api:8000
  api:
    build: ./api
    expose: ["8000"]
    networks:
      default:
        aliases: [backend]
  cache:
    image: memcached:1.6
"""


def parsed(compose: str) -> dict[str, dict[str, Any]]:
    return dict(yaml.safe_load(compose)["services"])


def roles(plan: StackPlan) -> dict[str, str]:
    return {s.name: s.role for s in plan.services}


def test_node_and_redis() -> None:
    plan = classify(parsed(NODE_REDIS))
    assert roles(plan) == {"web": "routed", "redis": "shared"}
    assert plan.database == "none"
    assert plan.routes == {"web": "/"}
    assert plan.health_paths == {"web": "/healthz"}
    assert plan.health_inferred == {"web"}
    assert (plan.public.host_ip, plan.public.port) == ("", 3000)
    assert "image only (redis:7-alpine)" in plan.services[1].reason


def test_python_mariadb_and_a_worker() -> None:
    plan = classify(parsed(PYTHON_MARIADB_WORKER))
    assert roles(plan) == {"app": "routed", "worker": "worker", "mariadb": "shared"}
    assert (plan.database, plan.db_service) == ("mysql", "mariadb")
    assert plan.services[0].container_port == 8000
    assert plan.public.host_ip == "127.0.0.1"
    assert plan.health_paths == {"app": "/health"}  # not readable: the default, and a note
    assert any("app: HAProxy checks GET /health" in n for n in plan.notes)


def test_a_database_built_locally_is_shared_and_feedback_is_not_a_database() -> None:
    plan = classify(parsed(POSTGRES_BUILT_LOCALLY))
    assert roles(plan) == {"db": "shared", "feedback": "routed", "monitoring": "optional"}
    assert (plan.database, plan.db_service) == ("postgres", "db")
    assert "'db' in its name" in plan.services[0].reason
    assert "by its environment" in plan.services[0].reason
    assert plan.health_paths == {"feedback": "/api/health"}


def test_two_routed_services_the_first_gets_slash_and_the_user_is_told() -> None:
    plan = classify(parsed(TWO_ROUTED))
    assert roles(plan) == {"frontend": "routed", "api": "routed", "cache": "shared"}
    assert plan.routes == {"frontend": "/"}
    assert plan.unrouted == ["api"]
    assert any("api: no public route yet" in n and "routes = {" in n for n in plan.notes)
    assert next(s for s in plan.services if s.name == "api").container_port == 8000


def test_settings_override_the_guess() -> None:
    services = parsed(POSTGRES_BUILT_LOCALLY)
    plan = classify(
        services,
        {
            "services.colours": ["feedback-{colour}"],
            "services.workers": ["db-{colour}"],  # odd, but the team's word wins
            "router.routes": {"feedback-{colour}": "/"},
            "router.health_paths": {"feedback-{colour}": "/ping"},
            "database.kind": "none",
        },
    )
    assert roles(plan)["db"] == "worker"
    assert plan.health_paths == {"feedback": "/ping"}
    assert plan.database == "none"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"services.colours": ["nope-{colour}"]}, "names 'nope', which is not one of"),
        ({"services.colours": ["{colour}-web"]}, "must be 'S-{colour}'"),
        ({"services.colours": ["redis-{colour}"]}, "'redis', which has no port"),
    ],
)
def test_settings_that_name_no_usable_service_are_refused(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScaffoldError, match=message):
        classify(parsed(NODE_REDIS), settings)


def test_a_two_colour_or_portless_file_is_refused() -> None:
    with pytest.raises(ScaffoldError, match="already has a service 'loadbalancer'"):
        classify({**parsed(NODE_REDIS), "loadbalancer": {"image": "haproxy"}})
    with pytest.raises(ScaffoldError, match="no service to route to"):
        classify({"worker": {"build": "."}, "db": {"image": "postgres"}})
    with pytest.raises(ScaffoldError, match="web runs on the host's network"):
        classify({"web": {"build": ".", "network_mode": "host", "expose": [80]}})


@pytest.mark.parametrize(
    ("name", "spec", "hint"),
    [
        ("db", {"build": "./db"}, "'db' in its name"),
        ("store", {"build": {"context": "./docker/postgres-15"}}, "'postgres' in its build"),
        ("q", {"build": ".", "image": "team/rabbitmq-custom"}, "'rabbitmq' in its image"),
        ("feedback", {"build": "./feedback"}, ""),
        ("dashboard", {"build": "/srv/db-team/dashboard"}, ""),  # parents of a checkout: no
        ("api", {"build": "."}, ""),
    ],
)
def test_infra_hint(name: str, spec: dict[str, Any], hint: str) -> None:
    found = infra_hint(name, spec)
    assert (hint in found) if hint else found == ""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("8080:8000", PortBinding("", "8080", 8000)),
        ("127.0.0.1:8080:8000/tcp", PortBinding("127.0.0.1", "8080", 8000)),
        ("9000", PortBinding("", "", 9000)),
        (
            "${BIND:-0.0.0.0}:${WEB_PORT:-8080}:80",
            PortBinding("${BIND:-0.0.0.0}", "${WEB_PORT:-8080}", 80),
        ),
        ({"target": 8000, "published": "8080", "host_ip": "::1"}, PortBinding("::1", "8080", 8000)),
        ({"target": 8000}, PortBinding("", "", 8000)),
        ("[::1]:8080:8000", PortBinding("::1", "8080", 8000)),
    ],
)
def test_parse_port(raw: object, expected: PortBinding) -> None:
    assert parse_port(raw) == expected


def test_a_port_from_a_variable_becomes_the_public_port_setting() -> None:
    services = {"web": {"build": ".", "ports": ["${WEB_PORT:-8080}:8000"]}}
    plan = classify(services)
    assert plan.public.port == 8080
    assert "set PUBLIC_HTTPS_PORT where you set ${WEB_PORT}" in plan.public.note


def test_health_path_is_read_from_an_http_healthcheck_only() -> None:
    assert (
        health_path_of({"healthcheck": {"test": ["CMD", "curl", "-f", "http://localhost/up"]}})
        == "/up"
    )
    assert health_path_of({"healthcheck": {"test": ["CMD", "python3", "/app/check.py"]}}) == ""
    assert health_path_of({}) == ""


# ---- the override ---------------------------------------------------------------------------


def test_override_makes_both_colours_and_keeps_variables() -> None:
    services = parsed(PYTHON_MARIADB_WORKER)
    services["app"]["container_name"] = "shop-app"
    plan = classify(services)
    override = build_override(services, plan, {}, Layout("shop"))["services"]
    assert list(override) == [
        "app", "app-blue", "app-green", "worker", "worker-blue", "worker-green", "loadbalancer",
    ]  # fmt: skip
    assert override["app"] == {"profiles": ["bluegreen-source"]}
    blue = override["app-blue"]
    assert "ports" not in blue
    assert "container_name" not in blue
    assert blue["image"] == "${COMPOSE_PROJECT_NAME:-shop}-app:${BLUE_RELEASE:-initial}"
    assert blue["build"] == services["app"]["build"]
    assert blue["environment"]["DATABASE_PASSWORD"] == "${DB_PASSWORD}"
    assert blue["environment"]["BG_COLOUR"] == "blue"
    assert override["app-green"]["environment"]["BG_RELEASE"] == "${GREEN_RELEASE:-initial}"
    # A per-colour dependency follows the colour; a shared one stays.
    assert override["worker-green"]["depends_on"] == ["mariadb", "app-green"]
    assert override["worker-blue"]["networks"]["bluegreen-blue"] == {"aliases": ["worker"]}
    assert "mariadb" not in override


def test_aliases_move_to_the_colour_network() -> None:
    services = parsed(TWO_ROUTED)
    override = build_override(services, classify(services), {}, Layout("shop"))
    networks = override["services"]["api-green"]["networks"]
    assert networks == {"default": {}, "bluegreen-green": {"aliases": ["api", "backend"]}}
    assert override["networks"] == {"bluegreen-blue": {}, "bluegreen-green": {}}


@pytest.mark.parametrize("tls", ["self-signed", "files", "off"])
def test_loadbalancer_publishes_the_old_port(tls: str) -> None:
    services = parsed(PYTHON_MARIADB_WORKER)
    lb = build_override(services, classify(services, tls=tls), {}, Layout("shop"))["services"][
        "loadbalancer"
    ]
    if tls == "off":
        assert lb["ports"][0] == "${PUBLIC_BIND:-127.0.0.1}:${PUBLIC_HTTP_PORT:-8000}:80"
        assert not any("/etc/haproxy/tls" in v for v in lb["volumes"])
    else:
        assert lb["ports"][:2] == [
            "${PUBLIC_BIND:-127.0.0.1}:${PUBLIC_HTTP_PORT:-80}:80",
            "${PUBLIC_BIND:-127.0.0.1}:${PUBLIC_HTTPS_PORT:-8000}:443",
        ]
        assert lb["environment"]["PUBLIC_HTTPS_PORT"] == "${PUBLIC_HTTPS_PORT:-8000}"
    assert lb["ports"][-3:] == [
        "127.0.0.1:${PREVIEW_BLUE_PORT:-8441}:8441",
        "127.0.0.1:${PREVIEW_GREEN_PORT:-8442}:8442",
        "127.0.0.1:${STATS_PORT:-8404}:8404",
    ]
    assert lb["image"] == "${COMPOSE_PROJECT_NAME:-shop}-loadbalancer:2.6"
    assert lb["build"]["context"] == "./bluegreen/haproxy"
    assert lb["cap_drop"] == ["ALL"]
    assert lb["read_only"] is True
    assert lb["networks"] == ["bluegreen-blue", "bluegreen-green"]
    assert "${BLUEGREEN_STATE_DIR:-./.bluegreen}/lb:/var/lib/bluegreen" in lb["volumes"]


def test_layout_is_relative_to_the_first_compose_file() -> None:
    layout = relative_layout("shop", "/srv/shop/deploy", "/srv/shop")
    assert layout == Layout("shop", "../bluegreen/haproxy", "../.bluegreen")


# ---- HAProxy's configuration ------------------------------------------------------------------


def two_routes(tls: str) -> StackPlan:
    return classify(
        parsed(TWO_ROUTED),
        {"router.routes": {"frontend-{colour}": "/", "api-{colour}": "/api/"}},
        tls=tls,
    )


@pytest.mark.parametrize("tls", ["self-signed", "files"])
def test_haproxy_cfg_with_tls(tls: str) -> None:
    cfg = render_haproxy_cfg(two_routes(tls), "shop")
    assert "bind :443 ssl crt /etc/haproxy/tls/site.pem alpn h2,http/1.1" in cfg
    assert 'http-request redirect location "https://' in cfg
    assert "bind :8441 ssl crt /etc/haproxy/tls/site.pem alpn http/1.1" in cfg
    assert "ssl-default-bind-options ssl-min-ver TLSv1.2" in cfg
    assert "    use_backend api_%[var(txn.colour)] if { path_beg /api/ }\n" in cfg
    assert "    use_backend frontend_%[var(txn.colour)]\n" in cfg
    assert "    use_backend api_green if { path_beg /api/ }\n" in cfg
    assert "Strict-Transport-Security" in cfg


def test_haproxy_cfg_without_tls() -> None:
    cfg = render_haproxy_cfg(two_routes("off"), "shop")
    assert "ssl" not in cfg.replace("ssl-", "").replace("TLS", "")
    assert "frontend public_http\n    bind :80\n    option forwardfor" in cfg
    assert "redirect" not in cfg
    assert "X-Forwarded-Proto" not in cfg
    assert "    bind :8441\n" in cfg
    assert "    bind :8442\n" in cfg
    assert "${PUBLIC_HTTPS_PORT}" not in cfg


@pytest.mark.parametrize("tls", ["self-signed", "files", "off"])
def test_haproxy_cfg_follows_the_contract(tls: str) -> None:
    cfg = render_haproxy_cfg(two_routes(tls), "shop")
    assert "stats socket /var/lib/bluegreen/admin.sock mode 600 level admin" in cfg
    assert "str(active),map(/var/lib/bluegreen/active.map,blue)" in cfg
    assert 'stats auth "admin:${STATS_PASSWORD}"' in cfg
    assert "@{" not in cfg
    for service, port, path in (("frontend", 3000, "/health"), ("api", 8000, "/health")):
        for colour in ("blue", "green"):
            backend = cfg.split(f"\nbackend {service}_{colour}\n")[1].split("\n\n")[0]
            assert f"uri {path} ver HTTP/1.1" in backend
            assert f"X-Bluegreen-Colour {colour}" in backend
            assert (
                f"X-Bluegreen-Release %[str({colour}),map(/var/lib/bluegreen/releases.map,unknown)]"
                in backend
            )
            assert f"server {service}-{colour} {service}-{colour}:{port} check" in backend


# ---- settings ---------------------------------------------------------------------------------


def test_settings_toml_parses_and_lists_what_init_could_not_infer() -> None:
    plan = classify(parsed(NODE_REDIS))
    entries = settings_for(plan, "shop", ["docker-compose.yml"], OVERRIDE)
    text = render_settings(entries, "shop", ["docker-compose.yml"])
    settings = tomllib.loads(text)
    assert settings == {
        "project_name": "shop",
        "compose_files": ["docker-compose.yml", OVERRIDE],
        "services": {"colours": ["web-{colour}"], "workers": []},
        "router": {
            "backends": ["web_{colour}"],
            "routes": {"web-{colour}": "/"},
            "health_paths": {"web-{colour}": "/healthz"},
            "tls": "self-signed",
        },
        "database": {"kind": "none"},
        "gates": {"critical_paths": ["/", "/healthz"]},
        "load": {"paths": ["/"]},
    }
    assert as_written(settings) == {
        "project_name": "shop",
        "compose_files": ["docker-compose.yml", OVERRIDE],
        "services.colours": ["web-{colour}"],
        "services.workers": [],
        "router.backends": ["web_{colour}"],
        "router.routes": {"web-{colour}": "/"},
        "router.health_paths": {"web-{colour}": "/healthz"},
        "router.tls": "self-signed",
        "database.kind": "none",
        "gates.critical_paths": ["/", "/healthz"],
        "load.paths": ["/"],
    }
    assert "# TODO: " in text
    assert "[migrations]" not in text  # migrations need a database, and there is none
    assert "[database]\n" in text
    assert "# service = " in text
    # Every key has its comment on the line above.
    lines = text.splitlines()
    assert all(
        lines[i - 1].startswith("# ")
        for i, line in enumerate(lines)
        if " = " in line and not line.startswith("#")
    )


def test_settings_for_tls_files_ask_for_the_files() -> None:
    plan = classify(parsed(NODE_REDIS), tls="files")
    text = render_settings(settings_for(plan, "shop", ["c.yml"], OVERRIDE), "shop", ["c.yml"])
    assert "# tls_cert_file = " in text
    assert "# tls_key_file = " in text
    assert tomllib.loads(text)["router"]["tls"] == "files"


def test_settings_of_a_mysql_stack() -> None:
    plan = classify(parsed(PYTHON_MARIADB_WORKER))
    text = render_settings(settings_for(plan, "shop", ["c.yml"], OVERRIDE), "shop", ["c.yml"])
    settings = tomllib.loads(text)
    assert settings["database"] == {"kind": "mysql", "service": "mariadb"}
    assert settings["services"]["workers"] == ["worker-{colour}"]
    assert settings["gates"]["critical_paths"] == ["/"]  # /health was a guess: not critical


# ---- the command, end to end with the fake Compose -------------------------------------------

SECRETS_ENV = (
    "DB_PASSWORD=s3cr3t-db-pw\nSESSION_KEY=k3y-from-dotenv\nBASE_IMAGE=debian:bookworm-slim\n"
)
APP_ENV = (
    "API_TOKEN=t0ken-in-app-env\nDATABASE_URL=mysql://app:pw-inside-url@mariadb/shop\nDEBUG=0\n"
)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    root = project(tmp_path, PYTHON_MARIADB_WORKER, SECRETS_ENV)
    (root / "app.env").write_text(APP_ENV)
    return root


def test_init_writes_every_file_and_says_why(shop: Path) -> None:
    lines = do_init(shop)
    assert lines[0] == "bluegreen init: project 'shop', from docker-compose.yml"
    assert lines[1].split() == ["app", "per", "colour,", "routed:", "has", "build:", "and",
                                "publishes", "8000", "->", "container", "port", "8000"]  # fmt: skip
    assert any(line.startswith("  worker   per colour, worker") for line in lines)
    assert any("mariadb" in line and "the database (mysql" in line for line in lines)
    for written in (OVERRIDE, "bluegreen/haproxy/haproxy.cfg", "bluegreen/haproxy/Dockerfile",
                    "bluegreen/haproxy/healthcheck.sh", "bluegreen.toml"):  # fmt: skip
        assert f"wrote: {written}" in lines
    assert os.access(shop / "bluegreen/haproxy/healthcheck.sh", os.X_OK)
    assert lines[-1] == "next: pytest --bg-deploy --bg-release <id>"
    assert any(line.startswith("to do: ") and "migrations.command" in line for line in lines)
    override = yaml.safe_load((shop / OVERRIDE).read_text())
    assert override["services"]["app-blue"]["build"]["context"] == "."  # never this checkout's
    assert override["services"]["app-blue"]["env_file"] == ["app.env"]


def test_a_second_run_changes_nothing(shop: Path) -> None:
    do_init(shop)
    before = generated_texts(shop)
    env_before = (shop / ".env").read_text()
    lines = do_init(shop)
    assert generated_texts(shop) == before
    assert (shop / ".env").read_text() == env_before
    assert [line for line in lines if line.startswith(("wrote", "replaced", "kept", "added"))] == []
    assert sum(line.startswith("unchanged: ") for line in lines) == 5  # four files and .env
    assert "left: bluegreen.toml (the team's settings; init never writes over them)" in lines


def test_a_changed_file_is_kept_unless_forced(shop: Path) -> None:
    do_init(shop)
    cfg = shop / "bluegreen/haproxy/haproxy.cfg"
    cfg.write_text(cfg.read_text() + "# local change\n")
    lines = do_init(shop)
    assert any(line.startswith("kept (differs") and "haproxy.cfg" in line for line in lines)
    assert cfg.read_text().endswith("# local change\n")
    lines = do_init(shop, force=True)
    assert "replaced: bluegreen/haproxy/haproxy.cfg" in lines
    assert "# local change" not in cfg.read_text()


def test_no_secret_value_from_an_env_file_reaches_a_generated_file(shop: Path) -> None:
    lines = do_init(shop)
    values = [*env_values(shop / ".env").values(), *env_values(shop / "app.env").values()]
    secrets = [v for v in values if len(v) > 4]
    assert "s3cr3t-db-pw" in secrets
    assert "t0ken-in-app-env" in secrets
    for name, text in generated_texts(shop).items():
        for secret in secrets:
            if secret == "debian:bookworm-slim":  # also the Dockerfile's own default
                continue
            assert secret not in text, f"{secret!r} in {name}"
    assert not any(value in "\n".join(lines) for value in values if len(value) > 4)
    assert "STATS_PASSWORD" in env_values(shop / ".env")
    assert env_values(shop / ".env")["STATS_PASSWORD"] not in "\n".join(lines)


def test_the_secret_guard_refuses_what_a_compose_would_leak(shop: Path) -> None:
    """A Compose that inlined a value with no env_file left to say so: init refuses to write."""

    def leaky(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        result = fake_compose(argv, **kwargs)
        return subprocess.CompletedProcess(
            argv, 0, result.stdout.replace("${DB_PASSWORD}", "s3cr3t-db-pw"), ""
        )

    with pytest.raises(ScaffoldError, match=r"the value of DB_PASSWORD from .*\.env"):
        run_init(shop, say=lambda line: None, command=V1, run=leaky)
    assert sorted(p.name for p in shop.iterdir()) == [".env", "app.env", "docker-compose.yml"]


def test_the_project_name_compose_already_uses_is_kept(tmp_path: Path) -> None:
    """COMPOSE_PROJECT_NAME in .env names the running stack; not a secret to refuse either."""
    root = project(tmp_path, NODE_REDIS, "COMPOSE_PROJECT_NAME=Visit-Counter\n", name="vc")
    lines = do_init(root)
    assert lines[0] == "bluegreen init: project 'visit-counter', from docker-compose.yml"
    assert tomllib.loads((root / "bluegreen.toml").read_text())["project_name"] == "visit-counter"


def test_env_file_is_created_private_with_a_stats_password(tmp_path: Path) -> None:
    root = project(tmp_path, NODE_REDIS)
    lines = do_init(root)
    env = root / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    values = env_values(env)
    assert len(values["STATS_PASSWORD"]) >= 24
    assert values["PUBLIC_HTTPS_PORT"] == "3000"
    assert "added to .env: STATS_PASSWORD, PUBLIC_HTTPS_PORT (values not shown)" in lines


def test_existing_settings_are_left_and_compared(shop: Path) -> None:
    (shop / "pyproject.toml").write_text(
        '[project]\nname = "shop"\n\n[tool.bluegreen]\nproject_name = "shop"\n'
        'colour_services = ["app-{colour}"]\nworkers = []\ntls = "off"\n'
    )
    lines = do_init(shop)
    assert not (shop / "bluegreen.toml").exists()
    assert "left: pyproject.toml (the team's settings; init never writes over them)" in lines
    assert "  differs: compose_files not set (init infers " in "\n".join(lines)
    override = yaml.safe_load((shop / OVERRIDE).read_text())["services"]
    assert "worker-blue" not in override  # the settings say no workers: worker is shared
    assert "bind :443" not in (shop / "bluegreen/haproxy/haproxy.cfg").read_text()


def test_tls_comes_from_the_settings_once_they_exist(shop: Path) -> None:
    do_init(shop, tls="off")
    assert tomllib.loads((shop / "bluegreen.toml").read_text())["router"]["tls"] == "off"
    assert "bind :443" not in (shop / "bluegreen/haproxy/haproxy.cfg").read_text()
    with pytest.raises(
        ScaffoldError, match=r"--tls files, but the settings say router\.tls = 'off'"
    ):
        do_init(shop, tls="files")


def test_the_override_stores_the_fingerprint_doctor_compares(shop: Path) -> None:
    do_init(shop)
    first = stored_digest((shop / OVERRIDE).read_text())
    assert len(first) == 64
    compose = shop / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("celery -A app worker", "celery worker"))
    again = source.read_source(shop, [compose], "shop", V1, fake_compose)
    assert again.digest != first


@pytest.mark.parametrize("tls", ["self-signed", "off"])
def test_the_settings_init_writes_are_valid_settings(shop: Path, tls: str) -> None:
    do_init(shop, tls=tls)
    config = load_config(shop, environ={})
    assert config.project_name == "shop"
    assert [p.name for p in config.compose_files] == [
        "docker-compose.yml",
        "docker-compose.bluegreen.yml",
    ]
    assert config.services.colours == ("app-{colour}",)
    assert config.services.workers == ("worker-{colour}",)
    assert config.router.backends == ("app_{colour}",)
    assert (config.database.kind, config.database.service) == ("mysql", "mariadb")
    assert config.router.tls == tls
    assert config.router.routes == {"app-{colour}": "/"}
    # The deploy probes where HAProxy publishes: the app's old port.
    scheme = "http" if tls == "off" else "https"
    assert config.public_url == f"{scheme}://localhost:8000"


# ---- failures: one line, exit 2, nothing written --------------------------------------------


def test_cli_init_without_a_compose_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--project-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bluegreen: error: no Compose file in ")
    assert "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_init_with_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--project-dir", str(tmp_path), "-f", "nope.yml"]) == 2
    assert "compose file not found: " in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_init_without_compose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path, NODE_REDIS)

    def absent(*args: Any) -> tuple[str, ...]:
        raise DockerUnavailable(
            "neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed"
        )

    monkeypatch.setattr(source, "detect_compose_command", absent)
    assert main(["init", "--project-dir", str(root)]) == 2
    assert "bluegreen: error: neither 'docker compose'" in capsys.readouterr().err
    assert [p.name for p in root.iterdir()] == ["docker-compose.yml"]


def test_an_invalid_file_is_one_line(tmp_path: Path) -> None:
    root = project(tmp_path, "services: [\n")
    with pytest.raises(ScaffoldError) as failure:
        do_init(root)
    assert "config --no-interpolate failed: " in str(failure.value)
    assert "\n" not in str(failure.value)
    assert [p.name for p in root.iterdir()] == ["docker-compose.yml"]


VARIABLE_PORT = """
services:
  web:
    build: ./web
    ports: ["${WEB_PORT:-3000}:3000"]
    healthcheck:
      test: ["CMD", "node", "check.js"]
      retries: ${HEALTH_RETRIES:-3}
"""


def test_variables_compose_v1_refuses_uninterpolated_are_read_from_numbered_copies(
    tmp_path: Path,
) -> None:
    root = project(tmp_path, VARIABLE_PORT)
    (root / "web").mkdir()
    lines = do_init(root)
    assert lines[1].endswith("has build: and publishes ${WEB_PORT:-3000} -> container port 3000")
    assert any("set PUBLIC_HTTPS_PORT where you set ${WEB_PORT}" in line for line in lines)
    blue = yaml.safe_load((root / OVERRIDE).read_text())["services"]["web-blue"]
    assert blue["healthcheck"]["retries"] == "${HEALTH_RETRIES:-3}"  # as written, not the number
    assert blue["build"]["context"] == "./web"
    assert [p.name for p in tmp_path.iterdir()] == ["shop"]  # the numbered copies are gone
    again = do_init(root)
    assert sum(line.startswith("unchanged: bluegreen/") for line in again) == 4


def test_v1_variable_ports_get_the_way_out() -> None:
    message = source._compose_failure(
        "'config --no-interpolate' failed (exit 1):\nThe Compose file is invalid because:\n"
        "services.web.ports contains an invalid type, it should be a number, or an object",
        ("docker-compose",),
    )
    assert message.startswith("docker-compose config --no-interpolate failed: The Compose file")
    assert "use Compose v2" in message


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="needs docker-compose (v1)")
def test_real_compose_v1_inlines_env_files_and_init_still_copies_no_value(shop: Path) -> None:
    """The real ``docker-compose config --no-interpolate`` (no daemon needed)."""
    lines: list[str] = []
    run_init(shop, say=lines.append, command=("docker-compose",))
    texts = "\n".join(generated_texts(shop).values())
    for secret in ("s3cr3t-db-pw", "k3y-from-dotenv", "t0ken-in-app-env", "pw-inside-url"):
        assert secret not in texts
    assert "${DB_PASSWORD}" in texts


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="needs docker-compose (v1)")
def test_real_compose_v1_with_variable_ports(tmp_path: Path) -> None:
    root = project(tmp_path, VARIABLE_PORT)
    (root / "web").mkdir()
    lines: list[str] = []
    run_init(root, say=lines.append, command=("docker-compose",))
    assert "publishes ${WEB_PORT:-3000} -> container port 3000" in lines[1]
    blue = yaml.safe_load((root / OVERRIDE).read_text())["services"]["web-blue"]
    assert blue["healthcheck"]["retries"] == "${HEALTH_RETRIES:-3}"
    checked = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "-f", OVERRIDE, "config", "-q"],
        cwd=root, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="needs docker-compose (v1)")
def test_cli_init_with_options_before_or_after_the_verb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source, "detect_compose_command", lambda run: ("docker-compose",))
    root = project(tmp_path, NODE_REDIS)
    (root / "other.yml").write_text(NODE_REDIS.replace("3000:3000", "3001:3000"))
    assert main(["--project-dir", str(root), "init", "-f", "other.yml", "--tls", "off"]) == 0
    out = capsys.readouterr().out
    assert "bluegreen init: project 'shop', from other.yml" in out
    settings = tomllib.loads((root / "bluegreen.toml").read_text())
    assert settings["compose_files"] == ["other.yml", OVERRIDE]
    assert settings["router"]["tls"] == "off"
    assert main(["init", "--project-dir", str(root)]) == 0  # the settings name other.yml
    assert "unchanged: bluegreen/docker-compose.bluegreen.yml" in capsys.readouterr().out


# ---- doctor -------------------------------------------------------------------------------------


def test_doctor_without_settings_says_run_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_compose(*args: Any) -> tuple[str, ...]:
        raise DockerUnavailable("no compose here")

    monkeypatch.setattr(doctor, "detect_compose_command", no_compose)
    lines: list[str] = []
    code = doctor.run_doctor(
        tmp_path, lines.append, lambda argv, **kw: subprocess.CompletedProcess(argv, 1, "", "x")
    )
    assert code == 1
    assert lines[0] == (
        "FAIL  settings: no [tool.bluegreen] in pyproject.toml and no bluegreen.toml: "
        "run bluegreen init"
    )
    assert "FAIL  compose: no compose here" in lines
    assert any(
        line.startswith("FAIL  docker: ") and "start the Docker daemon" in line for line in lines
    )
    assert lines[-1].startswith("some checks failed")


def doctor_runner(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Docker answers, runs nothing; Compose is the fake."""
    if argv[:2] == ["docker", "version"]:
        return subprocess.CompletedProcess(argv, 0, "20.10.24\n", "")
    if argv[:2] == ["docker", "ps"]:
        return subprocess.CompletedProcess(argv, 0, "", "")
    return fake_compose(argv, **kwargs)


def test_doctor_passes_on_a_project_init_adopted(
    shop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor, "detect_compose_command", lambda run: V1)
    monkeypatch.setattr(doctor, "port_in_use", lambda port: False)
    do_init(shop)
    lines: list[str] = []
    assert doctor.run_doctor(shop, lines.append, doctor_runner) == 0, "\n".join(lines)
    assert [line.split(":")[0] for line in lines[:9]] == [
        "ok    settings",
        "ok    compose files",
        "ok    generated files",
        "ok    compose config",
        "ok    generated override",
        "ok    colour services",
        "ok    haproxy backends",
        "ok    docker",
        "ok    STATS_PASSWORD",
    ]
    assert lines[9:-1] == [
        f"ok    port {port} (loadbalancer): free" for port in (80, 8000, 8441, 8442, 8404)
    ]
    assert lines[-1] == "all checks passed"


def test_doctor_says_what_to_do_about_a_stale_or_broken_layer(
    shop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor, "detect_compose_command", lambda run: V1)
    monkeypatch.setattr(doctor, "port_in_use", lambda port: False)
    do_init(shop)
    compose = shop / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("celery -A app worker", "celery worker"))
    (shop / "bluegreen/haproxy/haproxy.cfg").write_text("global\n")
    env = shop / ".env"
    env.write_text(env.read_text().replace("STATS_PASSWORD=", "OLD_STATS_PASSWORD="))
    lines: list[str] = []
    assert doctor.run_doctor(shop, lines.append, doctor_runner) == 1
    failed = {line.split(":")[0]: line for line in lines if line.startswith("FAIL")}
    assert set(failed) == {
        "FAIL  generated override",
        "FAIL  haproxy backends",
        "FAIL  STATS_PASSWORD",
    }
    assert failed["FAIL  generated override"].endswith("run bluegreen init --force")
    assert "no backend app_blue" in failed["FAIL  haproxy backends"]
    assert "add STATS_PASSWORD=<a long random value> to .env" in failed["FAIL  STATS_PASSWORD"]


def test_doctor_reads_port_holders_from_docker_ps() -> None:
    out = (
        "shop\tloadbalancer\tshop_loadbalancer_1\t0.0.0.0:80->80/tcp, "
        "127.0.0.1:8441-8442->8441-8442/tcp\n"
        "shop\tweb\tshop_web_1\t0.0.0.0:3000->3000/tcp, :::3000->3000/tcp\n"
        "other\tdb\tother_db_1\t\n"
    )
    holders = doctor._holders(lambda argv, **kw: subprocess.CompletedProcess(argv, 0, out, ""))
    assert holders[8442] == ("shop", "loadbalancer", "shop_loadbalancer_1")
    assert holders[3000] == ("shop", "web", "shop_web_1")
    assert 5432 not in holders
