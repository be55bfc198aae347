from __future__ import annotations

from pathlib import Path

import pytest

from pytest_bluegreen.core.config import load_config, read_env_file
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
    assert config.services_of("green") == ("web-green",)
    assert config.backends_of("blue") == ("web_blue",)
    assert config.migrate_service_of("blue") == "web-blue"
    assert (config.database, config.has_database, config.has_migrations) == ("none", False, False)
    assert config.critical_paths == ("/",)
    assert config.gate_suites[0].startswith("bluegreen:")
    assert config.postdeploy_suite == "bluegreen:postdeploy"
    assert config.hardening == {"non_root": "gate", "limits": "warn", "secret_files": "gate"}
    assert config.admin_socket == project / ".bluegreen" / "lb" / "admin.sock"
    assert config.public_url == "https://localhost:443"
    assert config.preview_url("green") == "https://127.0.0.1:8442"
    assert config.metrics_path == project / ".bluegreen" / "metrics" / "bluegreen.prom"
    assert config.pushgateway_url == ""


def test_pyproject_table_is_read(project: Path) -> None:
    write_pyproject(project, 'project_name = "shop"\nhealthy_timeout_s = 30\nstate_dir = "/srv/bg"')
    config = load_config(project, environ={})
    assert config.project_name == "shop"
    assert config.healthy_timeout_s == 30.0
    assert config.state_dir == Path("/srv/bg")


def test_metrics_settings_resolve_against_the_project(project: Path) -> None:
    write_pyproject(project, 'metrics_file = "m/deploy.prom"\npushgateway_url = "http://gw:9091"')
    config = load_config(project, environ={})
    assert config.metrics_path == project / "m" / "deploy.prom"
    assert config.pushgateway_url == "http://gw:9091"


def test_secret_names_add_to_the_secret_policy(project: Path) -> None:
    assert load_config(project, environ={}).secret_names == ()
    write_pyproject(project, 'secret_names = ["MY_CREDS", "stripe_live"]')
    assert load_config(project, environ={}).secret_names == ("MY_CREDS", "stripe_live")


def test_bluegreen_toml_used_when_pyproject_has_no_table(project: Path) -> None:
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (project / "bluegreen.toml").write_text('project_name = "other"\n')
    assert load_config(project, environ={}).project_name == "other"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("colour = 'blue'", "unknown key bluegreen.colour"),
        ("project_name = 3", "bluegreen.project_name must be a str, not int"),
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
        ("tls = 'files'", "bluegreen.tls = 'files' needs tls_cert_file and tls_key_file"),
        ("tls_ca_file = 'missing.pem'", "bluegreen.tls_ca_file: file not found"),
        ("database = 'commands'", "bluegreen.database = 'commands' needs backup_command"),
        (
            "database = 'commands'\nbackup_command = ['dump']\ndatabase_name = 'x'\n"
            "migrate_command = ['m']",
            "bluegreen.migrate_command with database = 'commands' needs restore_command",
        ),
        ("migrate_command = ['migrate']", "bluegreen.migrate_command needs a database"),
        ("workers = ['worker']", "bluegreen.workers: every entry must contain '{colour}'"),
        (
            "expected_status = {'/admin/' = 999}",
            "bluegreen.expected_status./admin/ must be an HTTP",
        ),
        ("expected_status = {'/x' = '302'}", "bluegreen.expected_status./x must be a int"),
        ("routes = {'web-{colour}' = 'api'}", "bluegreen.routes: every path must start with '/'"),
        ("hardening = {'sandbox' = 'gate'}", "unknown hardening check bluegreen.hardening.sandbox"),
        (
            "hardening = {'limits' = 'maybe'}",
            "bluegreen.hardening.limits must be gate, warn or off",
        ),
        ("rehearsal_env = {'1X' = 'a'}", "bluegreen.rehearsal_env: '1X' is not a variable name"),
        ("pushgateway_url = 'gateway:9091'", "bluegreen.pushgateway_url must start with http://"),
        ("secret_names = 'MY_CREDS'", "bluegreen.secret_names must be a list, not str"),
        ("secret_names = ['']", "bluegreen.secret_names must be a non-empty list of strings"),
        ("secret_names = ['MY-CREDS']", "bluegreen.secret_names: 'MY-CREDS' is not an environment"),
        ("secret_names = ['OK', '1ST']", "bluegreen.secret_names: '1ST' is not an environment"),
    ],
)
def test_bad_settings_name_the_key(project: Path, body: str, message: str) -> None:
    write_pyproject(project, body)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config(project, environ={})


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
    assert config.latency_rounds == 50
    assert (config.latency_p50_budget_ms, config.latency_p99_budget_ms) == (250.0, 500.0)
    assert config.gate_suites == (
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
    assert config.tls_key_file == project / "key.pem"
