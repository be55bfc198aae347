"""Server-rendered HTML frontend for aptos (stdlib only, served by gunicorn).

Each colour's frontend reads its own colour's backend API, so a broken API shows
up here as a 502 page.
"""

import html
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from typing import Any

BACKEND_URL = os.environ.get("BACKEND_URL", "http://backend-blue:8000").rstrip("/")
COLOUR = os.environ.get("BG_COLOUR", "unknown")
RELEASE = os.environ.get("BG_RELEASE", "unknown")
BACKEND_TIMEOUT = 3.0
PAGE_SIZE = 100

Headers = list[tuple[str, str]]
StartResponse = Callable[..., Any]
Response = tuple[str, str, bytes]  # status, content type, body

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
logger = logging.getLogger("aptos.frontend")


class BackendError(Exception):
    """The backend could not give us a usable answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def fetch_json(path: str) -> dict[str, Any]:
    """GET a backend API path; the headers get past Django's SSL redirect and host check."""
    request = urllib.request.Request(
        BACKEND_URL + path,
        headers={
            "Accept": "application/json",
            "Host": "localhost",
            "X-Forwarded-Proto": "https",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=BACKEND_TIMEOUT) as response:
            data = json.load(response)
    except urllib.error.HTTPError as exc:
        raise BackendError(f"backend answered {exc.code}", exc.code) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BackendError(f"backend unreachable ({type(exc).__name__})") from exc
    if not isinstance(data, dict):
        raise BackendError("backend sent an unexpected body")
    return data


def esc(value: Any) -> str:
    """Escape anything for HTML; None shows as an empty cell."""
    return "" if value is None else html.escape(str(value))


def layout(title: str, body: str) -> bytes:
    """Wrap page content in the shared HTML skeleton."""
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)} - aptos</title>
<style>
body {{ font-family: sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }}
footer {{ margin-top: 2rem; color: #666; font-size: .9rem; }}
</style>
</head>
<body>
<nav><a href="/">Home</a> | <a href="/aptos">Apartments</a> | <a href="/builders">Builders</a></nav>
<h1>{esc(title)}</h1>
{body}
<footer>colour: <span id="colour">{esc(COLOUR)}</span>,
release: <span id="release">{esc(RELEASE)}</span></footer>
</body>
</html>
"""
    return page.encode("utf-8")


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Render an escaped HTML table."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def page_number(query: str) -> int:
    """The ?page= of a listing, falling back to 1 when absent or invalid."""
    raw = urllib.parse.parse_qs(query).get("page", ["1"])[0]
    return int(raw) if raw.isdigit() and int(raw) >= 1 else 1


def pager(path: str, page: int, data: dict[str, Any]) -> str:
    """Previous/next links when the backend says there are more pages."""
    links = []
    if data.get("previous"):
        links.append(f'<a rel="prev" href="{path}?page={page - 1}">previous</a>')
    if data.get("next"):
        links.append(f'<a rel="next" href="{path}?page={page + 1}">next</a>')
    return f"<p>{' | '.join(links)}</p>" if links else ""


def home(query: str) -> Response:
    """Counts of builders and apartments, with links."""
    builders = fetch_json("/api/v1/builders/?page_size=1")["count"]
    apartments = fetch_json("/api/v1/aptos/?page_size=1")["count"]
    body = (
        f'<p><a href="/builders">Builders</a>: '
        f'<span id="builder-count">{esc(builders)}</span></p>\n'
        f'<p><a href="/aptos">Apartments</a>: '
        f'<span id="apartment-count">{esc(apartments)}</span></p>'
    )
    return "200 OK", "text/html; charset=utf-8", layout("aptos", body)


def apartments_page(query: str) -> Response:
    """Table of apartments, one backend page at a time."""
    page = page_number(query)
    data = fetch_json(f"/api/v1/aptos/?page={page}&page_size={PAGE_SIZE}")
    rows = [
        (
            a["id"],
            a["title"],
            a["builder_name"],
            a["address"],
            a["bedrooms"],
            a["area_m2"],
            a["price"],
            "yes" if a["available"] else "no",
        )
        for a in data["results"]
    ]
    columns = ("ID", "Title", "Builder", "Address", "Bedrooms", "Area (m²)", "Price", "Available")
    body = (
        f"<p>{esc(data['count'])} apartments</p>\n"
        f"{table(columns, rows)}\n{pager('/aptos', page, data)}"
    )
    return "200 OK", "text/html; charset=utf-8", layout("Apartments", body)


def builders_page(query: str) -> Response:
    """Table of builders, one backend page at a time."""
    page = page_number(query)
    data = fetch_json(f"/api/v1/builders/?page={page}&page_size={PAGE_SIZE}")
    rows = [(b["id"], b["name"], b["city"], b["founded_year"]) for b in data["results"]]
    body = (
        f"<p>{esc(data['count'])} builders</p>\n"
        f"{table(('ID', 'Name', 'City', 'Founded'), rows)}\n{pager('/builders', page, data)}"
    )
    return "200 OK", "text/html; charset=utf-8", layout("Builders", body)


def health(query: str) -> Response:
    """Liveness of this process only; the backend has its own health check."""
    body = {"status": "ok", "colour": COLOUR, "release": RELEASE, "service": "frontend"}
    return "200 OK", "application/json", json.dumps(body).encode("utf-8")


ROUTES: dict[str, Callable[[str], Response]] = {
    "/": home,
    "/aptos": apartments_page,
    "/builders": builders_page,
    "/health": health,
}


def error_page(status: str, message: str) -> Response:
    """Short HTML error page."""
    return status, "text/html; charset=utf-8", layout(status, f"<p>{esc(message)}</p>")


def dispatch(method: str, path: str, query: str) -> Response:
    """Pick the handler for a request and turn failures into error pages."""
    handler = ROUTES.get(path)
    if handler is None:
        return error_page("404 Not Found", "No such page.")
    if method not in ("GET", "HEAD"):
        return error_page("405 Method Not Allowed", "Only GET is supported.")
    try:
        return handler(query)
    except BackendError as exc:
        if exc.status == 404:
            return error_page("404 Not Found", "No such page.")
        logger.warning("backend error on %s: %s", path, exc)
        return error_page("502 Bad Gateway", f"The backend API failed: {exc}")
    except (KeyError, TypeError) as exc:
        logger.warning("unexpected backend data on %s: %r", path, exc)
        return error_page("502 Bad Gateway", "The backend API sent unexpected data.")


def application(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """WSGI entry point: every response carries the colour and security headers."""
    method = environ.get("REQUEST_METHOD", "GET")
    try:
        status, content_type, body = dispatch(
            method, environ.get("PATH_INFO", "/"), environ.get("QUERY_STRING", "")
        )
    except Exception:  # keep the colour headers even on bugs
        logger.exception("unhandled error")
        status, content_type, body = error_page("500 Internal Server Error", "Internal error.")
    headers: Headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Bluegreen-Colour", COLOUR),
        ("X-Bluegreen-Release", RELEASE),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
        ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ]
    if status.startswith("405"):
        headers.append(("Allow", "GET, HEAD"))
    start_response(status, headers)
    return [] if method == "HEAD" else [body]
