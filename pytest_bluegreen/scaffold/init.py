"""``bluegreen init``: the blue-green layer for a team's existing one-colour Compose file.

Reads the stack through ``compose config --no-interpolate`` (:mod:`.source`: no value of
``.env`` is ever copied), decides what each service is (:mod:`.compose_model`), and writes,
each only when absent or identical unless ``--force``: ``bluegreen/docker-compose.bluegreen.yml``
(an override applied after the team's files), ``bluegreen/haproxy/`` (configuration,
Dockerfile, healthcheck), the settings (never over the team's own), and a ``STATS_PASSWORD`` in
``.env``. Running it again changes nothing and says so.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml

from pytest_bluegreen.adapters.engines.compose_cli import Runner
from pytest_bluegreen.reporting.secrets import MIN_SECRET_LENGTH, SECRET_NAME
from pytest_bluegreen.scaffold.compose_model import (
    EnvDeclaration,
    ScaffoldError,
    StackPlan,
    classify,
    declared_environment,
)
from pytest_bluegreen.scaffold.haproxy_cfg import render_haproxy_cfg, template_text
from pytest_bluegreen.scaffold.override import build_override, relative_layout
from pytest_bluegreen.scaffold.settings_toml import (
    differences,
    render_settings,
    settings_for,
    todos,
)
from pytest_bluegreen.scaffold.source import (
    OVERRIDE,
    SETTINGS_FILE,
    Settings,
    Source,
    env_values,
    project_name_of,
    read_settings,
    read_source,
    user_compose_files,
)

Say = Callable[[str], None]

HAPROXY_DIR: Final = "bluegreen/haproxy"
DIGEST_PREFIX: Final = "# source-sha256: "
# A value checked whatever its name: a URL with a user and password in it.
CREDENTIALS_IN_URL: Final = re.compile(r"://[^/@\s]+:[^/@\s]+@")


@dataclass(frozen=True, slots=True)
class Generated:
    """What init would write: files (relative path -> text, mode) and the settings."""

    plan: StackPlan
    project_name: str
    files: dict[str, tuple[str, int]]
    settings_text: str
    settings_lines: list[str]  # differences from the team's existing settings
    todo_keys: list[str]
    notes: list[str] = field(default_factory=list)


def generate(
    project_dir: Path, source: Source, settings: Settings, tls: str | None = None
) -> Generated:
    """Everything init writes, as text: pure apart from reading packaged templates."""
    table = settings.table
    project_name = project_name_of(project_dir, settings)
    if tls and table.get("router.tls") and tls != table["router.tls"]:
        raise ScaffoldError(
            f"--tls {tls}, but the settings say router.tls = {table['router.tls']!r}: change it "
            "there, the settings are what the deploy reads"
        )
    mode = str(table.get("router.tls") or tls or "self-signed")
    services = source.services
    plan = classify(services, table, mode)
    declared = {name: declared_environment(source.raw, name) for name in plan.per_colour}
    layout = relative_layout(project_name, str(source.compose_dir), str(project_dir.resolve()))
    override = build_override(services, plan, declared, layout)
    compose_files = [_relative(f, project_dir) for f in source.files]
    override_text = _override_header(compose_files, source.digest) + yaml.safe_dump(
        override, sort_keys=False, default_flow_style=False, width=4096
    )
    cfg = render_haproxy_cfg(plan, project_name)
    entries = settings_for(plan, project_name, compose_files, OVERRIDE)
    settings_text = render_settings(entries, project_name, compose_files)
    check_no_secrets(
        project_dir,
        source,
        declared,
        {
            # The services copied from the team's; the loadbalancer is all init's own text.
            OVERRIDE: yaml.safe_dump(
                {k: v for k, v in override["services"].items() if k != "loadbalancer"}
            ),
            f"{HAPROXY_DIR}/haproxy.cfg": cfg,
            SETTINGS_FILE: settings_text,
        },
    )
    files = {
        OVERRIDE: (override_text, 0o644),
        f"{HAPROXY_DIR}/haproxy.cfg": (cfg, 0o644),
        f"{HAPROXY_DIR}/Dockerfile": (template_text("Dockerfile"), 0o644),
        f"{HAPROXY_DIR}/healthcheck.sh": (template_text("healthcheck.sh"), 0o755),
    }
    env_file = (project_dir / str(table.get("env_file") or ".env")).resolve()
    notes = [
        f"{name} reads {_relative(env_file, project_dir)} as its env_file, so its containers also "
        "get the STATS_PASSWORD init adds there; give it an env file of its own to avoid that"
        for name, declaration in declared.items()
        if any(
            isinstance(e, str) and (source.compose_dir / e).resolve() == env_file
            for e in declaration.env_files
        )
    ]
    return Generated(
        plan,
        project_name,
        files,
        settings_text,
        differences(table, entries) if settings.exists else [],
        todos(entries),
        notes,
    )


def _relative(path: Path, project_dir: Path) -> str:
    try:
        return str(path.resolve().relative_to(project_dir.resolve()))
    except ValueError:
        return str(path)


def _override_header(compose_files: Sequence[str], digest: str) -> str:
    chain = " ".join(f"-f {f}" for f in [*compose_files, OVERRIDE])
    return (
        "# The blue-green layer of this stack, generated by `bluegreen init` (pytest-bluegreen).\n"
        f"# Applied after the team's file(s): docker-compose {chain}\n"
        "# Each per-colour service S runs as S-blue and S-green (S itself only under the profile\n"
        "# bluegreen-source, which nothing starts); HAProxy publishes S's port. Do not edit: run\n"
        "# `bluegreen init --force` after changing the Compose file (`bluegreen doctor` says).\n"
        f"{DIGEST_PREFIX}{digest}\n"
    )


def stored_digest(override_text: str) -> str:
    """The fingerprint of the team's config a generated override was made from ("" if none)."""
    for line in override_text.splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line.removeprefix(DIGEST_PREFIX).strip()
    return ""


# ---- secrets ---------------------------------------------------------------------------------


def check_no_secrets(
    project_dir: Path,
    source: Source,
    declared: Mapping[str, EnvDeclaration],
    texts: Mapping[str, str],
) -> None:
    """Refuse to write a value of an env file that the team's Compose files do not contain.

    ``--no-interpolate`` and the env-file rule should make this impossible; a leak into a
    committed file must never be the way to find out.
    """
    files = {project_dir / ".env", source.compose_dir / ".env"}
    for declaration in declared.values():
        for entry in declaration.env_files:
            name = entry if isinstance(entry, str) else str(entry.get("path", ""))
            files.add(source.compose_dir / name)
    for env_file in sorted(files):
        for key, value in env_values(env_file).items():
            secret = SECRET_NAME.search(key) and len(value) >= MIN_SECRET_LENGTH
            if not (secret or CREDENTIALS_IN_URL.search(value)) or value in source.raw_text:
                continue
            for name, text in texts.items():
                if value in text:
                    raise ScaffoldError(
                        f"refusing to write {name}: it would contain the value of {key} from "
                        f"{env_file} (please report this as a bug of bluegreen init)"
                    )


# ---- writing ---------------------------------------------------------------------------------


def write_file(path: Path, text: str, mode: int, force: bool) -> str:
    """Write ``path`` when absent, or different with ``force``; say what happened."""
    if path.is_file():
        current = path.read_text(encoding="utf-8")
        if current == text:
            if path.stat().st_mode & 0o777 != mode:
                path.chmod(mode)
            return "unchanged"
        if not force:
            return "kept (differs from what init generates now; --force replaces it)"
        verb = "replaced"
    else:
        verb = "wrote"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    tmp.replace(path)
    return verb


def ensure_env(path: Path, wanted: Mapping[str, str]) -> list[str]:
    """Append each of ``wanted`` that ``path`` lacks; create it (mode 600) if missing.

    Returns the keys added. Values are never printed: a password is among them.
    """
    present = env_values(path)
    missing = {k: v for k, v in wanted.items() if k not in present}
    if not missing:
        return []
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(descriptor)
    text = path.read_text(encoding="utf-8")
    lead = "" if not text or text.endswith("\n") else "\n"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(lead + "".join(f"{k}={v}\n" for k, v in missing.items()))
    return list(missing)


def env_additions(plan: StackPlan) -> dict[str, str]:
    """``STATS_PASSWORD``, and the public port unless it is the plugin's default.

    So the deploy probes the port HAProxy publishes.
    """
    wanted = {"STATS_PASSWORD": secrets.token_urlsafe(24)}
    setting, default = ("PUBLIC_HTTP_PORT", 80) if plan.tls == "off" else ("PUBLIC_HTTPS_PORT", 443)
    if plan.public.port != default:
        wanted[setting] = str(plan.public.port)
    return wanted


# ---- the command -----------------------------------------------------------------------------


def run_init(
    project_dir: Path,
    compose_files: Sequence[Path] | None = None,
    force: bool = False,
    tls: str | None = None,
    say: Say = print,
    command: tuple[str, ...] | None = None,
    run: Runner = subprocess.run,
) -> None:
    """The command: decide, print why, write.

    Whatever stops it (no Compose, a file Compose rejects, settings init cannot follow) raises
    before anything is written.
    """
    project_dir = project_dir.resolve()
    settings = read_settings(project_dir)
    files = user_compose_files(project_dir, compose_files, settings)
    name = project_name_of(project_dir, settings)
    source = read_source(project_dir, files, name, command, run)
    generated = generate(project_dir, source, settings, tls)
    write_and_report(project_dir, source, generated, settings, force, say)


def write_and_report(
    project_dir: Path,
    source: Source,
    generated: Generated,
    settings: Settings,
    force: bool,
    say: Say,
) -> None:
    """Write the files and print what was decided and done."""
    plan = generated.plan
    sources = ", ".join(_relative(f, project_dir) for f in source.files)
    say(f"bluegreen init: project {generated.project_name!r}, from {sources}")
    width = max(len(s.name) for s in plan.services)
    for service in plan.services:
        say(f"  {service.name:<{width}}  {service.reason}")
    routes = ", ".join(f"{p} -> {s}" for s, p in plan.routes.items())
    say(f"  routes: {routes}; TLS: {plan.tls}; public port {plan.public.port}")
    for note in [*plan.notes, *generated.notes]:
        say(f"  note: {note}")
    for relative, (text, mode) in generated.files.items():
        say(f"{write_file(project_dir / relative, text, mode, force)}: {relative}")
    if settings.exists:
        assert settings.path is not None
        where = _relative(settings.path, project_dir)
        say(f"left: {where} (the team's settings; init never writes over them)")
        for line in generated.settings_lines:
            say(f"  differs: {line}")
    else:
        verb = write_file(project_dir / SETTINGS_FILE, generated.settings_text, 0o644, False)
        say(f"{verb}: {SETTINGS_FILE}")
    env_file = project_dir / str(settings.table.get("env_file") or ".env")
    existed = env_file.exists()
    added = ensure_env(env_file, env_additions(plan))
    if added:
        say(f"added to {_relative(env_file, project_dir)}: {', '.join(added)} (values not shown)")
        example = env_file.with_name(env_file.name + ".example")
        if not existed and example.is_file():
            say(
                f"  note: {_relative(env_file, project_dir)} did not exist: it holds only these "
                f"now; add your stack's own settings ({_relative(example, project_dir)})"
            )
    else:
        say(f"unchanged: {_relative(env_file, project_dir)} (STATS_PASSWORD already set)")
    if generated.todo_keys and not settings.exists:
        say(
            f"to do: edit the settings init could not infer in {SETTINGS_FILE} (marked TODO): "
            + ", ".join(generated.todo_keys)
        )
    say("check: bluegreen doctor")
    say("next: pytest --bg-deploy --bg-release <id>")
