from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from pytest_bluegreen.core.config import (
    FLAT,
    SCHEMA,
    SECTIONS,
    StackConfig,
    as_written,
    load_config,
    read_env_file,
)
from pytest_bluegreen.core.errors import ConfigError


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "docker-compose.blue-green.yml").write_text("services: {}\n")
    return tmp_path


def write_pyproject(project: Path, body: str) -> None:
    (project / "pyproject.toml").write_text(f"[tool.bluegreen]\n{body}\n")


def test_defaults_without_settings_are_generic(tmp_path: Path) -> None:
    project = tmp_path / "My Shop"
    project.mkdir()
    (project / "docker-compose.blue-green.yml").write_text("services: {}\n")
    config = load_config(project, environ={})
    assert config.project_name == "my-shop"  # the folder's name, as Compose would take it
    assert config.compose_files == (project / "docker-compose.blue-green.yml",)
    assert config.services.services_of("green") == ("web-green",)
    assert config.router.backends_of("blue") == ("web_blue",)
    assert config.migrate_service_of("blue") == "web-blue"
    assert (config.database.kind, config.has_database, config.has_migrations) == (
        "none",
        False,
        False,
    )
    assert config.gates.critical_paths == ("/",)
    assert config.gates.suites[0].startswith("bluegreen:")
    assert config.gates.postdeploy_suite == "bluegreen:postdeploy"
    assert config.gates.hardening == {"non_root": "gate", "limits": "warn", "secret_files": "gate"}
    assert config.admin_socket == project / ".bluegreen" / "lb" / "admin.sock"
    assert config.public_url == "https://localhost:443"
    assert config.preview_url("green") == "https://127.0.0.1:8442"
    assert config.metrics_path == project / ".bluegreen" / "metrics" / "bluegreen.prom"
    assert config.reporting.pushgateway_url == ""


def test_pyproject_table_is_read(project: Path) -> None:
    write_pyproject(project, 'project_name = "shop"\nhealthy_timeout_s = 30\nstate_dir = "/srv/bg"')
    config = load_config(project, environ={})
    assert config.project_name == "shop"
    assert config.engine.healthy_timeout_s == 30.0
    assert config.state_dir == Path("/srv/bg")


def test_metrics_settings_resolve_against_the_project(project: Path) -> None:
    write_pyproject(project, 'metrics_file = "m/deploy.prom"\npushgateway_url = "http://gw:9091"')
    config = load_config(project, environ={})
    assert config.metrics_path == project / "m" / "deploy.prom"
    assert config.reporting.pushgateway_url == "http://gw:9091"


def test_secret_names_add_to_the_secret_policy(project: Path) -> None:
    assert load_config(project, environ={}).reporting.secret_names == ()
    write_pyproject(project, 'secret_names = ["MY_CREDS", "stripe_live"]')
    assert load_config(project, environ={}).reporting.secret_names == ("MY_CREDS", "stripe_live")


def test_bluegreen_toml_used_when_pyproject_has_no_table(project: Path) -> None:
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (project / "bluegreen.toml").write_text('project_name = "other"\n')
    assert load_config(project, environ={}).project_name == "other"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("colour = 'blue'", "pyproject.toml: unknown key bluegreen.colour"),
        ("project_name = 3", "pyproject.toml: bluegreen.project_name must be a str, not int (3)"),
        ("healthy_timeout_s = -1", "bluegreen.healthy_timeout_s must be positive"),
        ("healthy_timeout_s = true", "bluegreen.healthy_timeout_s must be a float"),
        ("colour_services = ['backend']", "must contain '{colour}'"),
        ("compose_files = []", "bluegreen.compose_files must be a non-empty list"),
        ("project_name = 'My App'", "bluegreen.project_name 'My App' must be lowercase"),
        ("compose_files = ['missing.yml']", "compose file not found"),
        ("project_name = ", "is not valid TOML"),
        ("rehearsal_paths = ['api/v1/health']", "bluegreen.rehearsal_paths: every path must start"),
        ("latency_margin_ms = -5", "bluegreen.latency_margin_ms must be positive"),
        ("critical_paths = []", "bluegreen.critical_paths must be a non-empty"),
        (
            "database = 'oracle'",
            "bluegreen.database must be one of none, postgres, mysql, commands",
        ),
        (
            "tls = 'files'",
            "bluegreen.router.tls = 'files' needs bluegreen.router.tls_cert_file and tls_key_file",
        ),
        ("tls_ca_file = 'missing.pem'", "bluegreen.tls_ca_file: file not found"),
        (
            "database = 'commands'",
            "bluegreen.database.kind = 'commands' needs bluegreen.database.backup_command",
        ),
        (
            "database = 'commands'\nbackup_command = ['dump']\ndatabase_name = 'x'\n"
            "migrate_command = ['m']",
            "bluegreen.migrations.command with bluegreen.database.kind = 'commands' needs "
            "bluegreen.database.restore_command",
        ),
        ("migrate_command = ['migrate']", "bluegreen.migrations.command needs a database"),
        ("workers = ['worker']", "bluegreen.workers: every entry must contain '{colour}'"),
        (
            "expected_status = {'/admin/' = 999}",
            "bluegreen.expected_status./admin/ must be an HTTP",
        ),
        ("expected_status = {'/x' = '302'}", "bluegreen.expected_status./x must be an int"),
        ("routes = {'web-{colour}' = 'api'}", "bluegreen.routes: every path must start with '/'"),
        ("hardening = {'sandbox' = 'gate'}", "unknown key bluegreen.hardening.sandbox"),
        (
            "hardening = {'limits' = 'maybe'}",
            "bluegreen.hardening.limits must be one of gate, warn, off",
        ),
        (
            "rehearsal_env = {'1X' = 'a'}",
            "bluegreen.rehearsal_env: '1X' is not an environment variable name",
        ),
        ("pushgateway_url = 'gateway:9091'", "bluegreen.pushgateway_url must start with http://"),
        ("secret_names = 'MY_CREDS'", "bluegreen.secret_names must be a list, not str"),
        ("secret_names = ['']", "bluegreen.secret_names must be a non-empty list of strings"),
        ("secret_names = ['MY-CREDS']", "bluegreen.secret_names: 'MY-CREDS' is not an environment"),
        ("secret_names = ['OK', '1ST']", "bluegreen.secret_names: '1ST' is not an environment"),
        ("webhooks = ['hooks.example']", "bluegreen.webhooks: every URL must start with http://"),
        (
            "router_backends = ['a_{colour}', 'b_{colour}']",
            "bluegreen.router.backends has more entries than bluegreen.services.colours",
        ),
        # The sectioned spelling: errors name the key as written, dotted.
        (
            "[tool.bluegreen.load]\nusers = '4'",
            "bluegreen.load.users must be an int, not str ('4')",
        ),
        ("[tool.bluegreen.gates]\ncritical_paths = []", "bluegreen.gates.critical_paths must be"),
        ("[tool.bluegreen.router]\ntls = 'ftp'", "bluegreen.router.tls must be one of"),
    ],
)
def test_bad_settings_name_the_file_and_the_key(project: Path, body: str, message: str) -> None:
    write_pyproject(project, body)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(project, environ={})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # An old spelling is the closest: its new spelling is suggested.
        (
            "critcal_paths = ['/']",
            "unknown key bluegreen.critcal_paths; did you mean bluegreen.gates.critical_paths?",
        ),
        ("load_user = 3", "unknown key bluegreen.load_user; did you mean bluegreen.load.users?"),
        (
            "[tool.bluegreen.load]\nusrs = 3",
            "unknown key bluegreen.load.usrs; did you mean bluegreen.load.users?",
        ),
        (
            "[tool.bluegreen.load]\nload_users = 3",
            "unknown key bluegreen.load.load_users; did you mean bluegreen.load.users?",
        ),
        (
            "[tool.bluegreen.gate]\nbake_s = 1",
            "unknown key bluegreen.gate; did you mean bluegreen.gates?",
        ),
        (
            "project_nam = 'x'",
            "unknown key bluegreen.project_nam; did you mean bluegreen.project_name?",
        ),
    ],
)
def test_unknown_key_names_the_file_the_key_and_the_closest_one(
    project: Path, body: str, message: str
) -> None:
    write_pyproject(project, body)
    with pytest.raises(ConfigError) as raised:
        load_config(project, environ={})
    assert str(raised.value) == f"pyproject.toml: {message}"


def test_errors_name_the_settings_file_they_come_from(project: Path) -> None:
    (project / "bluegreen.toml").write_text("[load]\nusers = -1\n")
    with pytest.raises(ConfigError) as raised:
        load_config(project, environ={})
    assert str(raised.value) == "bluegreen.toml: bluegreen.load.users must be positive, not -1"


def test_missing_config_file_is_an_error(project: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(project, config_file=Path("nope.toml"), environ={})


def test_command_line_compose_files_replace_configured_ones(project: Path) -> None:
    write_pyproject(project, 'compose_files = ["docker-compose.blue-green.yml"]')
    override = project / "override.yml"
    override.write_text("services: {}\n")
    config = load_config(project, compose_files=[Path("override.yml")], environ={})
    assert config.compose_files == (override,)


def test_environment_overrides_env_file(project: Path) -> None:
    (project / ".env").write_text(
        "# comment\nPUBLIC_HTTPS_PORT=8443\nSTATS_PORT='9404'\nPOSTGRES_PASSWORD=\"s3cret\"\n"
    )
    config = load_config(project, environ={"PUBLIC_HTTPS_PORT": "18443"})
    assert config.public_url == "https://localhost:18443"
    assert config.stats_url == "http://127.0.0.1:9404/stats"
    assert config.environment["POSTGRES_PASSWORD"] == "s3cret"
    assert config.environment["BLUEGREEN_STATE_DIR"] == str(project / ".bluegreen")


def test_bad_port_is_an_error(project: Path) -> None:
    config = load_config(project, environ={"PUBLIC_HTTPS_PORT": "https"})
    with pytest.raises(ConfigError, match="PUBLIC_HTTPS_PORT='https'"):
        _ = config.public_url


def test_env_file_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("GOOD=1\nthis is not an assignment\n")
    with pytest.raises(ConfigError, match=r"\.env:2: expected KEY=VALUE"):
        read_env_file(path)


def test_gate_settings_have_the_design_defaults(project: Path) -> None:
    write_pyproject(project, "latency_rounds = 50")
    config = load_config(project, environ={})
    assert config.gates.latency_rounds == 50
    assert (config.gates.latency_p50_budget_ms, config.gates.latency_p99_budget_ms) == (
        250.0,
        500.0,
    )
    assert config.gates.suites == (
        "bluegreen:migration",
        "bluegreen:http",
        "bluegreen:latency",
        "bluegreen:hardening",
    )


def test_database_name_and_user_come_from_the_kinds_variables(project: Path) -> None:
    write_pyproject(project, 'database = "postgres"')
    env = {"POSTGRES_DB": "shop", "POSTGRES_USER": "shopper"}
    config = load_config(project, environ=env)
    assert (config.database_name_value(), config.database_user_value()) == ("shop", "shopper")
    write_pyproject(project, 'database = "mysql"\ndatabase_name = "${APP_DB}_main"')
    config = load_config(project, environ={"APP_DB": "orders"})
    assert (config.database_name_value(), config.database_user_value()) == ("orders_main", "")
    write_pyproject(project, 'database = "mysql"')
    with pytest.raises(ConfigError, match="set MARIADB_DATABASE or MYSQL_DATABASE"):
        load_config(project, environ={}).database_name_value()


def test_tls_modes_decide_urls_and_what_clients_trust(project: Path) -> None:
    write_pyproject(project, 'tls = "off"')
    config = load_config(project, environ={"PUBLIC_HTTP_PORT": "8080"})
    assert config.public_url == "http://localhost:8080"
    assert config.preview_url("blue") == "http://127.0.0.1:8441"
    assert config.ca_file is None
    for name in ("site.pem", "key.pem", "ca.pem"):
        (project / name).write_text("x")
    write_pyproject(
        project,
        'tls = "files"\ntls_cert_file = "site.pem"\ntls_key_file = "key.pem"\n'
        'tls_ca_file = "ca.pem"',
    )
    config = load_config(project, environ={})
    assert config.public_url == "https://localhost:443"
    assert config.ca_file == project / "ca.pem"
    assert config.router.tls_key_file == project / "key.pem"


def write_settings(project: Path, table: dict[str, Any]) -> None:
    (project / "pyproject.toml").write_text(tomli_w.dumps({"tool": {"bluegreen": table}}))


# Every default as it was before sections, by the flat key, so that none moved with them.
FLAT_DEFAULTS: dict[str, Any] = {
    "project_name": "bluegreen",
    "engine": "compose",
    "build_host": "",
    "state_dir": Path(".bluegreen"),
    "env_file": Path(".env"),
    "loadbalancer_service": "loadbalancer",
    "colour_services": ("web-{colour}",),
    "workers": (),
    "workers_start": "after_switch",
    "router_backends": ("web_{colour}",),
    "database": "none",
    "db_service": "db",
    "database_name": "",
    "database_user": "",
    "backup_command": (),
    "restore_command": (),
    "migrate_service": "",
    "migrate_command": (),
    "migration_pending_command": (),
    "migration_check_command": (),
    "seed_command": (),
    "critical_paths": ("/",),
    "expected_status": {},
    "public_host": "localhost",
    "preview_host": "127.0.0.1",
    "tls": "self-signed",
    "tls_cert_file": None,
    "tls_key_file": None,
    "tls_ca_file": None,
    "routes": {},
    "health_paths": {},
    "healthy_timeout_s": 180.0,
    "build_timeout_s": 1800.0,
    "command_timeout_s": 600.0,
    "backup_dir": Path(".bluegreen/backups"),
    "keep_backups": 10,
    "keep_releases": 5,
    "gate_suites": (
        "bluegreen:migration",
        "bluegreen:http",
        "bluegreen:latency",
        "bluegreen:hardening",
    ),
    "postdeploy_suite": "bluegreen:postdeploy",
    "hardening": {"non_root": "gate", "limits": "warn", "secret_files": "gate"},
    "drain_timeout_s": 30.0,
    "retire_delay_s": 0.0,
    "bake_s": 5.0,
    "load_users": 4,
    "load_user_rps": 5.0,
    "load_window_s": 3.0,
    "load_paths": ("/",),
    "load_failure_budget": 0,
    "load_p99_budget_ms": 100.0,
    "rehearsal_env": {},
    "rehearsal_port": 0,
    "rehearsal_paths": (),
    "latency_rounds": 20,
    "latency_p50_budget_ms": 250.0,
    "latency_p99_budget_ms": 500.0,
    "latency_margin_ms": 100.0,
    "webhooks": (),
    "webhook_style": "json",
    "metrics_file": None,
    "pushgateway_url": "",
    "secret_names": (),
}


def test_defaults_are_the_flat_ones_from_before_sections() -> None:
    config = StackConfig(project_dir=Path("/p"))
    found = {
        "compose_files": (),
        **{k: getattr(config, k) for k in SCHEMA[""] if k != "compose_files"},
    }
    for flat, key in FLAT.items():
        found[flat] = getattr(getattr(config, key.section), key.name)
    assert found == {"compose_files": (), **FLAT_DEFAULTS}
    # and the schema holds every key there was: 62 (the stack's own 4, the sections' 58)
    assert len(FLAT) + len(SCHEMA[""]) == len(FLAT_DEFAULTS) + 1 == 62


def sample(flat: str) -> Any:
    """A valid TOML value for the key, other than its default."""
    key = FLAT[flat]
    rule, default = key.rule, key.default
    if rule.choices and isinstance(default, str):
        return next(c for c in rule.choices if c not in (default, "commands", "files"))
    if isinstance(default, bool | int | float) or key.hint in ("int", "float"):
        return 7
    if isinstance(default, dict):
        item = "/p" if rule.paths == "keys" else "NAME" if rule.names == "keys" else "limits"
        value = 201 if rule.status else "/v" if rule.paths == "values" else "off"
        return {item: value}
    if isinstance(default, tuple):
        entry = "/p" if rule.paths else "http://h" if rule.url else "NAME" if rule.names else "e"
        return [entry.replace("e", "x-{colour}") if rule.colour else entry]
    if "file" in flat:
        return "f.pem"
    return "http://h" if rule.url else "x"


# Settings a key needs beside it to pass the checks of settings that go together.
COMPANIONS: dict[str, dict[str, Any]] = {
    "migrate_command": {"database": {"kind": "postgres"}},
    "tls_cert_file": {"router": {"tls": "files", "tls_key_file": "f.pem"}},
    "tls_key_file": {"router": {"tls": "files", "tls_cert_file": "f.pem"}},
}


@pytest.mark.parametrize("flat", sorted(FLAT))
def test_each_flat_key_loads_as_its_sectioned_spelling(project: Path, flat: str) -> None:
    (project / "f.pem").write_text("x")
    key, value = FLAT[flat], sample(flat)
    companions = COMPANIONS.get(flat, {})
    write_settings(project, {flat: value, **companions})
    old = load_config(project, environ={})
    section = {**companions.get(key.section, {}), key.name: value}
    write_settings(project, {**companions, key.section: section})
    new = load_config(project, environ={})
    assert old == new
    assert getattr(getattr(new, key.section), key.name) != key.default


# "database" and "engine" are their section's names too: TOML itself refuses both spellings.
@pytest.mark.parametrize("flat", sorted(set(FLAT) - set(SECTIONS)))
def test_a_flat_key_and_its_new_spelling_together_fail(project: Path, flat: str) -> None:
    key = FLAT[flat]
    write_settings(project, {flat: sample(flat), key.section: {key.name: sample(flat)}})
    with pytest.raises(ConfigError) as raised:
        load_config(project, environ={})
    assert str(raised.value) == (
        f"pyproject.toml: bluegreen.{flat} and bluegreen.{key.section}.{key.name} are the same "
        f"setting: keep bluegreen.{key.section}.{key.name} only"
    )


def test_sections_are_read_from_their_tables(project: Path) -> None:
    write_pyproject(
        project,
        'project_name = "shop"\n'
        '[tool.bluegreen.engine]\nname = "swarm"\nkeep_releases = 2\n'
        '[tool.bluegreen.services]\ncolours = ["api-{colour}"]\nworkers = ["job-{colour}"]\n'
        '[tool.bluegreen.router]\nbackends = ["api_{colour}"]\ntls = "off"\n'
        '[tool.bluegreen.database]\nkind = "postgres"\nservice = "pg"\nbackup_dir = "b"\n'
        '[tool.bluegreen.migrations]\ncommand = ["migrate"]\n'
        '[tool.bluegreen.gates]\ncritical_paths = ["/", "/health"]\nhardening = {limits = "off"}\n'
        "[tool.bluegreen.load]\nusers = 0\n"
        "[tool.bluegreen.retire]\ndelay_s = 30\n"
        '[tool.bluegreen.reporting]\nmetrics_file = "m.prom"\n',
    )
    config = load_config(project, environ={})
    assert config.project_name == "shop"
    assert (config.engine.name, config.engine.keep_releases) == ("swarm", 2)
    assert config.services.release_services_of("blue") == ("api-blue", "job-blue")
    assert (config.router.backends_of("green"), config.public_url) == (
        ("api_green",),
        "http://localhost:80",
    )
    assert (config.database.service, config.database.backup_dir) == ("pg", project / "b")
    assert (config.has_migrations, config.migrate_service_of("green")) == (True, "api-green")
    assert config.gates.critical_paths == ("/", "/health")
    assert config.gates.hardening == {"non_root": "gate", "limits": "off", "secret_files": "gate"}
    assert (config.load.users, config.retire.delay_s) == (0, 30.0)
    assert config.metrics_path == project / "m.prom"


def test_sections_at_the_top_of_bluegreen_toml(project: Path) -> None:
    (project / "bluegreen.toml").write_text('project_name = "other"\n[load]\nusers = 2\n')
    config = load_config(project, environ={})
    assert (config.project_name, config.load.users) == ("other", 2)


def test_a_sub_table_that_is_not_a_section_is_a_table_value(project: Path) -> None:
    write_pyproject(
        project,
        'hardening = { limits = "gate" }\n'
        '[tool.bluegreen.expected_status]\n"/admin/" = 302\n'
        '[tool.bluegreen.routes]\n"web-{colour}" = "/"\n',
    )
    config = load_config(project, environ={})
    assert config.gates.hardening["limits"] == "gate"
    assert config.gates.expected_status == {"/admin/": 302}
    assert config.router.routes == {"web-{colour}": "/"}


def test_every_section_has_its_table_and_old_keys_name_their_section() -> None:
    assert list(SECTIONS) == [
        "engine",
        "services",
        "router",
        "database",
        "migrations",
        "gates",
        "load",
        "retire",
        "reporting",
    ]
    assert (FLAT["colour_services"].dotted, FLAT["load_users"].dotted) == (
        "services.colours",
        "load.users",
    )
    assert (FLAT["database"].dotted, FLAT["engine"].dotted) == ("database.kind", "engine.name")


def test_as_written_reads_both_spellings_by_the_new_name() -> None:
    table = {"colour_services": ["a-{colour}"], "load": {"users": 0}, "nonsense": 1}
    assert as_written(table) == {"services.colours": ["a-{colour}"], "load.users": 0}


def test_replace_reaches_into_a_section() -> None:
    config = StackConfig(project_dir=Path("/p"))
    changed = dataclasses.replace(config, load=dataclasses.replace(config.load, users=0))
    assert (changed.load.users, config.load.users) == (0, 4)
