"""The settings ``bluegreen init`` writes, each key under a one-line comment.

The few it could not infer are written commented out under a ``# TODO:``, for the team.

Written by hand rather than by a TOML library so that each key keeps its comment; the values
are strings, lists of strings and tables of strings, whose TOML is JSON's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_bluegreen.scaffold.compose_model import (
    StackPlan,
    backend_pattern,
    colour_pattern,
)


@dataclass(frozen=True, slots=True)
class Setting:
    """One key: its value, why it has it, and whether the team must still decide it."""

    key: str
    value: Any
    comment: str
    todo: bool = False  # written commented out, the value an example


def toml_value(value: Any) -> str:
    """A string, a list of strings or a table of strings, in TOML."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items())
        return f"{{ {items} }}" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    raise TypeError(f"no TOML for {value!r}")


def public_service(path: str, routes: Mapping[str, str], default: str) -> str:
    """The routed service HAProxy's public frontend sends ``path`` to (longest prefix wins)."""
    matches = [(p, s) for s, p in routes.items() if p != "/" and path.startswith(p)]
    return max(matches, key=lambda m: len(m[0]))[1] if matches else default


def critical_paths(plan: StackPlan) -> list[str]:
    """``/``, and each health path read from a healthcheck that HAProxy routes to its service.

    Not a guessed ``/health``: it might not exist.
    """
    default = next((s for s, p in plan.routes.items() if p == "/"), plan.routed[0])
    paths = ["/"]
    for service in plan.routed:
        path = plan.health_paths[service]
        if (
            service in plan.health_inferred
            and path not in paths
            and public_service(path, plan.routes, default) == service
        ):
            paths.append(path)
    return paths


def settings_for(
    plan: StackPlan, project_name: str, compose_files: Sequence[str], override: str
) -> list[Setting]:
    """The settings of ``plan``, in the order a reader wants them."""
    database = plan.database
    entries = [
        Setting("project_name", project_name, "Compose project: prefixes containers and images"),
        Setting(
            "compose_files",
            [*compose_files, override],
            "the team's Compose file(s), then the blue-green layer init generated (applied last)",
        ),
        Setting(
            "services.colours",
            [colour_pattern(s) for s in plan.routed],
            "per-colour services HAProxy routes to (built by the team, with an HTTP port)",
        ),
        Setting(
            "services.workers",
            [colour_pattern(s) for s in plan.workers],
            "per-colour services without a port, started after the switch",
        ),
        Setting(
            "router.backends",
            [backend_pattern(s) for s in plan.routed],
            "HAProxy's backend of each routed service, same order (bluegreen/haproxy/haproxy.cfg)",
        ),
        Setting(
            "database.kind",
            database,
            "backed up before each deploy, migrations rehearsed on a copy: "
            "none|postgres|mysql|commands",
        ),
    ]
    if database != "none":
        entries.append(
            Setting("database.service", plan.db_service, "the database's Compose service")
        )
    else:
        entries.append(
            Setting(
                "database.service",
                "db",
                "if a shared service holds your data, set its kind and service here",
                todo=True,
            )
        )
    entries += [
        Setting(
            "gates.critical_paths",
            critical_paths(plan),
            "each colour must answer 200 on these, through HAProxy, before and after the switch",
        ),
        Setting("load.paths", ["/"], "what the users of the load across the switch request"),
        Setting(
            "router.routes",
            {colour_pattern(s): p for s, p in plan.routes.items()},
            "path prefix HAProxy sends to each routed service (longest first; '/' the rest)",
        ),
        Setting(
            "router.health_paths",
            {colour_pattern(s): plan.health_paths[s] for s in plan.routed},
            "path HAProxy checks each routed service's health on (GET, expects 200)",
        ),
        Setting(
            "router.tls",
            plan.tls,
            "self-signed (own CA in .bluegreen/tls) | files (tls_cert_file, tls_key_file) | off",
        ),
    ]
    if plan.tls == "files":
        entries += [
            Setting("router.tls_cert_file", "certs/site.crt", "the certificate (PEM)", todo=True),
            Setting("router.tls_key_file", "certs/site.key", "its private key (PEM)", todo=True),
        ]
    if database != "none":  # migrations need a database to run on
        entries.append(
            Setting(
                "migrations.command",
                ["./manage.py", "migrate"],
                "migrations: run in a one-off container of the new release",
                todo=True,
            )
        )
    return entries


def render_settings(entries: Sequence[Setting], project_name: str, sources: Sequence[str]) -> str:
    """``bluegreen.toml``: a header, the stack's keys, then one table per section.

    Each key under its comment; an entry's ``key`` is dotted (``section.name``).
    """
    lines = [
        f"# pytest-bluegreen settings of {project_name}, written by `bluegreen init` from "
        f"{', '.join(sources)}.",
        "# Every key and its default: pytest_bluegreen/core/config.py. `bluegreen doctor` checks",
        "# them; after changing the router's routes, health_paths or tls, or the services, run",
        "# `bluegreen init --force` to regenerate bluegreen/ (this file is kept as it is).",
        "",
    ]
    sections: dict[str, list[Setting]] = {}
    for entry in entries:  # the stack's own keys ("") first: TOML puts them before any table
        sections.setdefault(entry.key.rpartition(".")[0], []).append(entry)
    for section, members in sorted(sections.items(), key=lambda item: item[0] != ""):
        if section:
            lines += ["", f"[{section}]"]
        for entry in members:
            name = entry.key.rpartition(".")[2]
            if entry.todo:
                lines.append(f"# TODO: {entry.comment}")
                lines.append(f"# {name} = {toml_value(entry.value)}")
            else:
                lines.append(f"# {entry.comment}")
                lines.append(f"{name} = {toml_value(entry.value)}")
    return "\n".join(lines) + "\n"


def todos(entries: Sequence[Setting]) -> list[str]:
    return [e.key for e in entries if e.todo]


def differences(existing: Mapping[str, Any], entries: Sequence[Setting]) -> list[str]:
    """What the team's settings say where init infers otherwise, one line per key.

    Paths to check and to load are the team's choice once written, not something to infer.
    """
    lines = []
    for entry in entries:
        if entry.todo or entry.key in ("gates.critical_paths", "load.paths"):
            continue
        if entry.key not in existing:
            lines.append(f"{entry.key} not set (init infers {toml_value(entry.value)})")
        elif _normal(existing[entry.key]) != _normal(entry.value):
            lines.append(
                f"{entry.key} = {_show(existing[entry.key])} (init infers "
                f"{toml_value(entry.value)})"
            )
    return lines


def _show(value: Any) -> str:
    try:
        return toml_value(value)
    except TypeError:
        return repr(value)


def _normal(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _normal(v) for k, v in value.items()}
    return value
