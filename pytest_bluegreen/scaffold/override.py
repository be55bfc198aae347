"""The blue-green layer ``bluegreen init`` adds to a team's Compose file, as a Compose override.

For each per-colour service S: S itself kept only under a profile nothing starts, and S-blue and
S-green, full copies of S's definition as ``compose config --no-interpolate`` gives it (so
``${VARS}`` stay references), each with its own image tag and colour. Then the loadbalancer,
HAProxy as the reference stack runs it, and one network per colour. Pure functions.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pytest_bluegreen.core.colours import COLOURS, Colour
from pytest_bluegreen.scaffold.compose_model import (
    EnvDeclaration,
    StackPlan,
    colour_service,
    environment_of,
)

SOURCE_PROFILE: Final = "bluegreen-source"


# ---- paths ----------------------------------------------------------------------------------


def relative_to(path: str, base: str) -> str:
    """``/proj/web`` -> ``./web`` against ``/proj``: generated files must not name one checkout."""
    if path == base:
        return "."
    if path.startswith(base.rstrip("/") + "/"):
        return "./" + path[len(base.rstrip("/")) + 1 :]
    return path


def relativise_service(spec: Mapping[str, Any], base: str) -> dict[str, Any]:
    """The host paths Compose made absolute (build context, bind mounts, env files), relative."""
    out = copy.deepcopy(dict(spec))
    build = out.get("build")
    if isinstance(build, str):
        out["build"] = relative_to(build, base)
    elif isinstance(build, dict):
        for key in ("context", "dockerfile"):
            if isinstance(build.get(key), str):
                build[key] = relative_to(build[key], base)
    volumes: list[Any] = []
    for volume in out.get("volumes") or ():
        if isinstance(volume, str):
            volumes.append(relative_to(volume, base))
        elif isinstance(volume, dict) and isinstance(volume.get("source"), str):
            volumes.append({**volume, "source": relative_to(volume["source"], base)})
        else:
            volumes.append(volume)
    if "volumes" in out:
        out["volumes"] = volumes
    if "env_file" in out:
        entries = out["env_file"] if isinstance(out["env_file"], list) else [out["env_file"]]
        out["env_file"] = [
            relative_to(e, base)
            if isinstance(e, str)
            else {**e, "path": relative_to(str(e.get("path", "")), base)}
            for e in entries
        ]
    return out


def relativise(config: Mapping[str, Any], base: str) -> dict[str, Any]:
    """The whole ``config`` output with its services' host paths relative to ``base``."""
    out = dict(config)
    out["services"] = {
        name: relativise_service(spec or {}, base)
        for name, spec in (config.get("services") or {}).items()
    }
    return out


def source_digest(config: Mapping[str, Any]) -> str:
    """A fingerprint of the team's Compose config (relative paths), stored in the override."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ---- the override ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the generated files sit, as paths relative to Compose's project directory."""

    project_name: str
    haproxy_dir: str = "./bluegreen/haproxy"
    state_dir: str = "./.bluegreen"


def colour_network(colour: Colour) -> str:
    return f"bluegreen-{colour}"


def _release(colour: Colour) -> str:
    return f"${{{colour.upper()}_RELEASE:-initial}}"


def colour_copy(
    name: str,
    spec: Mapping[str, Any],
    colour: Colour,
    per_colour: Iterable[str],
    declared: EnvDeclaration,
    project_name: str,
) -> dict[str, Any]:
    """Service ``name`` of one colour, as the team defined it.

    Without ports or a fixed container name; its own image tag, ``BG_COLOUR`` and
    ``BG_RELEASE``; on its colour's network, where it (and its colour's other services) answer
    to their original names, so the application's own addresses keep working.
    """
    per_colour = set(per_colour)

    def rename(other: str) -> str:
        return colour_service(other, colour) if other in per_colour else other

    env = environment_of(spec)
    if declared.env_files:
        # Compose inlined the env files' values: keep only what the Compose file itself says.
        env = {k: v for k, v in env.items() if k in declared.keys}
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if key in ("ports", "container_name", "profiles", "env_file", "environment", "image"):
            continue
        out[key] = copy.deepcopy(value)
        if key == "build":
            out["image"] = f"${{COMPOSE_PROJECT_NAME:-{project_name}}}-{name}:{_release(colour)}"
    if "build" not in spec and "image" in spec:
        out["image"] = spec["image"]
    if declared.env_files:
        out["env_file"] = list(declared.env_files)
    out["environment"] = {**env, "BG_COLOUR": colour, "BG_RELEASE": _release(colour)}
    depends = spec.get("depends_on")
    if isinstance(depends, Mapping):
        out["depends_on"] = {rename(k): copy.deepcopy(v) for k, v in depends.items()}
    elif depends:
        out["depends_on"] = [rename(str(k)) for k in depends]
    if spec.get("links"):
        out["links"] = [
            ":".join([rename(str(link).split(":")[0]), *str(link).split(":")[1:]])
            for link in spec["links"]
        ]
    if spec.get("volumes_from"):
        out["volumes_from"] = [
            ":".join([rename(str(v).split(":")[0]), *str(v).split(":")[1:]])
            for v in spec["volumes_from"]
        ]
    mode = str(spec.get("network_mode") or "")
    if mode.startswith("service:"):
        out["network_mode"] = f"service:{rename(mode.removeprefix('service:'))}"
    if not mode:
        out["networks"] = _colour_networks(name, spec, colour)
    return out


def _colour_networks(name: str, spec: Mapping[str, Any], colour: Colour) -> dict[str, Any]:
    raw = spec.get("networks") or {"default": None}
    networks = raw if isinstance(raw, Mapping) else dict.fromkeys(raw)
    aliases = [name]
    out: dict[str, Any] = {}
    for network, options in networks.items():
        options = dict(options or {})
        # Both colours on one network: a shared alias or a fixed address would mix them.
        aliases += [a for a in options.pop("aliases", None) or () if a not in aliases]
        options.pop("ipv4_address", None)
        options.pop("ipv6_address", None)
        out[network] = options
    out[colour_network(colour)] = {"aliases": aliases}
    return out


def loadbalancer(plan: StackPlan, layout: Layout) -> dict[str, Any]:
    """HAProxy in front of both colours, as the reference stack's loadbalancer runs it."""
    bind = plan.public.host_ip or "0.0.0.0"
    bind = f"[{bind}]" if ":" in bind else bind
    public = f"${{PUBLIC_BIND:-{bind}}}"
    port = plan.public.port
    tls = plan.tls != "off"
    environment = {
        "STATS_PASSWORD": "${STATS_PASSWORD:?set STATS_PASSWORD in .env (bluegreen init)}"
    }
    if tls:
        environment["PUBLIC_HTTPS_PORT"] = f"${{PUBLIC_HTTPS_PORT:-{port}}}"
        ports = [
            f"{public}:${{PUBLIC_HTTP_PORT:-80}}:80",
            f"{public}:${{PUBLIC_HTTPS_PORT:-{port}}}:443",
        ]
    else:
        ports = [f"{public}:${{PUBLIC_HTTP_PORT:-{port}}}:80"]
    ports += [
        "127.0.0.1:${PREVIEW_BLUE_PORT:-8441}:8441",
        "127.0.0.1:${PREVIEW_GREEN_PORT:-8442}:8442",
        "127.0.0.1:${STATS_PORT:-8404}:8404",
    ]
    state = f"${{BLUEGREEN_STATE_DIR:-{layout.state_dir}}}"
    volumes = [f"{layout.haproxy_dir}/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]
    if tls:
        volumes.append(f"{state}/tls:/etc/haproxy/tls:ro")
    volumes.append(f"{state}/lb:/var/lib/bluegreen")
    return {
        "build": {
            "context": layout.haproxy_dir,
            "args": {"BASE_IMAGE": "${BASE_IMAGE:-debian:bookworm-slim}"},
        },
        "image": f"${{COMPOSE_PROJECT_NAME:-{layout.project_name}}}-loadbalancer:2.6",
        "environment": environment,
        "ports": ports,
        "volumes": volumes,
        "networks": [colour_network(c) for c in COLOURS],
        "healthcheck": {
            "test": ["CMD", "haproxy-healthcheck"],
            "interval": "2s",
            "timeout": "3s",
            "retries": 3,
            "start_period": "10s",
        },
        "read_only": True,
        "tmpfs": ["/tmp", "/run"],
        "cap_drop": ["ALL"],
        "cap_add": ["NET_BIND_SERVICE", "SETUID", "SETGID", "CHOWN"],
        "security_opt": ["no-new-privileges:true"],
        "mem_limit": "256m",
        "cpus": 1.0,
        "pids_limit": 256,
        "restart": "unless-stopped",
    }


def build_override(
    services: Mapping[str, Mapping[str, Any]],
    plan: StackPlan,
    declared: Mapping[str, EnvDeclaration],
    layout: Layout,
) -> dict[str, Any]:
    """The Compose override: both colours of each per-colour service, and the loadbalancer.

    The original service stays, only under a profile nothing starts; each colour gets a network.
    """
    out: dict[str, Any] = {}
    per_colour = plan.per_colour
    for name in per_colour:
        out[name] = {"profiles": [SOURCE_PROFILE]}
        for colour in COLOURS:
            out[colour_service(name, colour)] = colour_copy(
                name,
                services[name],
                colour,
                per_colour,
                declared.get(name, EnvDeclaration()),
                layout.project_name,
            )
    out["loadbalancer"] = loadbalancer(plan, layout)
    return {"services": out, "networks": {colour_network(c): {} for c in COLOURS}}


def relative_layout(project_name: str, compose_dir: str, project_dir: str) -> Layout:
    """The generated files' paths as Compose resolves them: from the first file's folder."""

    def rel(path: str) -> str:
        relative = os.path.relpath(os.path.join(project_dir, path), compose_dir)
        return relative if relative.startswith("..") else f"./{relative}"

    return Layout(project_name, rel("bluegreen/haproxy"), rel(".bluegreen"))
