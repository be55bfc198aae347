"""HAProxy's configuration for a team's stack, rendered from the template shipped in the package.

It follows the HAProxy contract the deploy drives (``adapters/routers/haproxy.py``):
the admin socket and the two map files under ``/var/lib/bluegreen``, a public frontend that
picks ``<backend>_%[var(txn.colour)]`` by path prefix, a preview frontend per colour, and one
backend per routed service and colour that names its colour and release in every response.
"""

from __future__ import annotations

import string
from importlib.resources import files
from typing import Final

from pytest_bluegreen.core.colours import COLOURS, Colour
from pytest_bluegreen.scaffold.compose_model import StackPlan, backend_name, colour_service

TEMPLATES: Final = files("pytest_bluegreen") / "templates"
MAP_DIR: Final = "/var/lib/bluegreen"
SITE_PEM: Final = "/etc/haproxy/tls/site.pem"
HSTS: Final = (
    'http-response set-header Strict-Transport-Security "max-age=31536000; includeSubDomains"'
)
TLS_GLOBAL: Final = """\
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
    ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:\
ECDHE-RSA-CHACHA20-POLY1305
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:\
TLS_CHACHA20_POLY1305_SHA256
"""
TLS_MODES: Final = {
    "self-signed": "HAProxy ends TLS with the stack's own certificate (.bluegreen/tls)",
    "files": "HAProxy ends TLS with the team's certificate (tls_cert_file, tls_key_file)",
    "off": "plain HTTP; TLS ends at a terminator in front of HAProxy",
}
PREVIEW_PORTS: Final = {"blue": 8441, "green": 8442}


class _Template(string.Template):
    """``@{name}`` placeholders: HAProxy's own ``${VAR}`` and ``%[...]`` stay as written."""

    delimiter = "@"


def template_text(name: str) -> str:
    """A file shipped in ``pytest_bluegreen/templates``."""
    return (TEMPLATES / name).read_text(encoding="utf-8")


def render_haproxy_cfg(plan: StackPlan, project_name: str) -> str:
    """The whole ``haproxy.cfg`` for ``plan``: frontends, previews, stats and backends."""
    if plan.tls not in TLS_MODES:
        raise ValueError(f"unknown TLS mode {plan.tls!r}")
    tls = plan.tls != "off"
    return _Template(template_text("haproxy.cfg.tmpl")).substitute(
        project=project_name,
        tls_mode=TLS_MODES[plan.tls],
        env_note=", PUBLIC_HTTPS_PORT" if tls else "",
        tls_global=TLS_GLOBAL if tls else "",
        public_frontends=_public(plan),
        preview_frontends="\n".join(_preview(plan, colour) for colour in COLOURS),
        backends="\n".join(
            _backend(plan, name, colour) for name in plan.routed for colour in COLOURS
        ),
    )


def _routing(plan: StackPlan, colour: str) -> list[str]:
    """``use_backend`` lines, longest prefix first, and the default backend."""
    default = next((s for s, prefix in plan.routes.items() if prefix == "/"), plan.routed[0])
    lines = [
        f"    use_backend {backend_name(service, colour)} if {{ path_beg {prefix} }}"
        for service, prefix in sorted(plan.routes.items(), key=lambda r: -len(r[1]))
        if service != default
    ]
    return [*lines, f"    use_backend {backend_name(default, colour)}"]


def _request_headers(tls: bool, route: str) -> list[str]:
    lines = ["    option forwardfor"]
    if tls:
        lines.append("    http-request set-header X-Forwarded-Proto https")
    return [*lines, f"    http-request set-header X-Bluegreen-Route {route}"]


def _response_headers(tls: bool) -> list[str]:
    lines = [f"    {HSTS}"] if tls else []
    return [*lines, "    http-response set-header X-Bluegreen-Backend %b"]


def _public(plan: StackPlan) -> str:
    tls = plan.tls != "off"
    default = next((s for s, prefix in plan.routes.items() if prefix == "/"), plan.routed[0])
    lines: list[str] = []
    if tls:
        lines += [
            "frontend public_http",
            "    bind :80",
            '    http-request redirect location "https://%[req.hdr(host),field(1,:)]:'
            '${PUBLIC_HTTPS_PORT}%[capture.req.uri]" code 301',
            "",
            "frontend public_https",
            f"    bind :443 ssl crt {SITE_PEM} alpn h2,http/1.1",
        ]
    else:
        lines += ["frontend public_http", "    bind :80"]
    lines += _request_headers(tls, "public")
    lines.append(f"    http-request set-var(txn.colour) str(active),map({MAP_DIR}/active.map,blue)")
    lines += _routing(plan, "%[var(txn.colour)]")
    lines.append(f"    default_backend {backend_name(default, 'blue')}")
    lines += _response_headers(tls)
    return "\n".join(lines) + "\n"


def _preview(plan: StackPlan, colour: Colour) -> str:
    tls = plan.tls != "off"
    port = PREVIEW_PORTS[colour]
    bind = f"    bind :{port} ssl crt {SITE_PEM} alpn http/1.1" if tls else f"    bind :{port}"
    lines = [f"frontend preview_{colour}", bind, *_request_headers(tls, "preview")]
    lines += _routing(plan, colour)
    lines += _response_headers(tls)
    return "\n".join(lines) + "\n"


def _backend(plan: StackPlan, service: str, colour: Colour) -> str:
    port = next(s.container_port for s in plan.services if s.name == service)
    server = colour_service(service, colour)
    return "\n".join(
        [
            f"backend {backend_name(service, colour)}",
            "    option httpchk",
            f"    http-check send meth GET uri {plan.health_paths[service]} ver HTTP/1.1 "
            "hdr Host localhost",
            "    http-check expect status 200",
            f"    http-response set-header X-Bluegreen-Colour {colour}",
            f"    http-response set-header X-Bluegreen-Release "
            f"%[str({colour}),map({MAP_DIR}/releases.map,unknown)]",
            f"    server {server} {server}:{port} check",
            "",
        ]
    )
