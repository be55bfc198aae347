"""The team's stack as ``bluegreen init`` and ``doctor`` read it: settings and Compose files.

The Compose configuration comes from ``compose config --no-interpolate``: ``${VARS}`` stay
references, and no value of the stack's ``.env`` enters a generated file. Compose v1 checks
``ports`` and ``expose`` before it would interpolate them, so it refuses ``"${WEB_PORT:-8080}:80"``
under ``--no-interpolate``; then the files are read again from copies whose variable ports are
numbers, and the team's own entries are put back afterwards (they are only read, never copied).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import tomllib
import yaml

from pytest_bluegreen.adapters.engines.compose_cli import Compose, Runner, detect_compose_command
from pytest_bluegreen.core.config import as_written
from pytest_bluegreen.core.errors import ComposeError
from pytest_bluegreen.scaffold.compose_model import ScaffoldError
from pytest_bluegreen.scaffold.override import relativise, source_digest

DEFAULT_COMPOSE_FILES: Final = (
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
)
OVERRIDE: Final = "bluegreen/docker-compose.bluegreen.yml"
SETTINGS_FILE: Final = "bluegreen.toml"
# What Compose v1 says of a ${VARIABLE} where it wants a number, before interpolating.
V1_REFUSES_VARIABLE: Final = re.compile(
    r"services\.(?P<where>[\w-]+\.[\w.]+) contains (?:.*?, which is )?an invalid type"
)


@dataclass(frozen=True, slots=True)
class Settings:
    """The team's settings as written, by dotted name (either spelling), and where, if any."""

    table: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def exists(self) -> bool:
        return self.path is not None


@dataclass(frozen=True, slots=True)
class Source:
    """The team's stack as Compose reads it, without interpolation, paths relative."""

    files: tuple[Path, ...]
    compose_dir: Path  # Compose's project directory: the first file's folder
    config: dict[str, Any]
    raw: tuple[dict[str, Any], ...]
    raw_text: str

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        """Services in the order the team wrote them (``config`` sorts them by name)."""
        resolved = self.config.get("services") or {}
        order = [n for doc in self.raw for n in (doc.get("services") or {})]
        names = list(dict.fromkeys([*(n for n in order if n in resolved), *resolved]))
        return {name: resolved[name] or {} for name in names}

    @property
    def digest(self) -> str:
        return source_digest(self.config)


def project_name_of(project_dir: Path, settings: Settings) -> str:
    """The Compose project's name: the settings', else the team's own, else the folder's.

    The team's own is ``COMPOSE_PROJECT_NAME`` in ``.env``: its stack already runs under it.
    """
    if settings.table.get("project_name"):
        return str(settings.table["project_name"])
    given = env_values(project_dir / ".env").get("COMPOSE_PROJECT_NAME", "")
    return sanitise_project_name(given or project_dir.name)


def sanitise_project_name(name: str) -> str:
    """A folder name as a Compose project name: ``[a-z0-9][a-z0-9_-]*``."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")
    return cleaned or "bluegreen"


def read_settings(project_dir: Path) -> Settings:
    """``[tool.bluegreen]`` of ``pyproject.toml``, else ``bluegreen.toml``."""
    for name in ("pyproject.toml", SETTINGS_FILE):
        path = project_dir / name
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ScaffoldError(f"{path} is not valid TOML: {exc}") from None
        table = data.get("tool", {}).get("bluegreen")
        if name == SETTINGS_FILE and table is None:
            table = data
        if isinstance(table, dict):
            return Settings(as_written(table), path)
    return Settings()


def user_compose_files(
    project_dir: Path, given: Sequence[Path] | None, settings: Settings
) -> list[Path]:
    """The team's Compose files.

    Given with -f, else the settings' (without ours), else Compose's default name in the project.
    """
    if given:
        files = list(given)
    elif settings.table.get("compose_files"):
        files = [Path(f) for f in settings.table["compose_files"] if Path(f) != Path(OVERRIDE)]
    else:
        found = next((n for n in DEFAULT_COMPOSE_FILES if (project_dir / n).is_file()), None)
        if found is None:
            raise ScaffoldError(
                f"no Compose file in {project_dir} ({', '.join(DEFAULT_COMPOSE_FILES)}): "
                "name yours with -f FILE"
            )
        files = [Path(found)]
    resolved = [f if f.is_absolute() else project_dir / f for f in files]
    for path in resolved:
        if not path.is_file():
            raise ScaffoldError(f"compose file not found: {path}")
    return resolved


def read_source(
    project_dir: Path,
    files: Sequence[Path],
    project_name: str,
    command: tuple[str, ...] | None = None,
    run: Runner = subprocess.run,
) -> Source:
    """``compose config --no-interpolate`` of the team's files, and the files themselves."""
    command = command or detect_compose_command(run)
    compose = Compose(command, tuple(files), project_name, project_dir, dict(os.environ), run)
    compose_dir = files[0].resolve().parent
    refused = ""
    try:
        config = yaml.safe_load(compose.run("config", "--no-interpolate", timeout=60).stdout)
    except ComposeError as exc:
        if not V1_REFUSES_VARIABLE.search(str(exc)):
            raise ScaffoldError(_compose_failure(str(exc), command)) from None
        refused = str(exc)
    except yaml.YAMLError as exc:
        raise ScaffoldError(f"cannot read the output of compose config: {exc}") from None
    texts, raw = _raw_files(files)
    if refused:
        config = _config_of_numbered_copies(compose, raw, compose_dir, refused)
    return Source(
        tuple(files), compose_dir, relativise(config or {}, str(compose_dir)), raw, "\n".join(texts)
    )


def _raw_files(files: Sequence[Path]) -> tuple[list[str], tuple[dict[str, Any], ...]]:
    """The files as written (Compose has read them already: they parse)."""
    texts, docs = [], []
    for path in files:
        try:
            texts.append(path.read_text(encoding="utf-8"))
            doc = yaml.safe_load(texts[-1]) or {}
        except (yaml.YAMLError, OSError) as exc:
            raise ScaffoldError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
        if not isinstance(doc, dict):
            raise ScaffoldError(f"{path} is not a Compose file (a mapping with services:)")
        docs.append(doc)
    return texts, tuple(docs)


def _numbered(entry: object) -> object:
    """A ``ports``/``expose`` entry Compose v1 accepts uninterpolated (a placeholder number)."""
    if "${" not in str(entry):
        return entry
    if isinstance(entry, dict):
        target = str(entry.get("target", ""))
        return {"target": int(target) if target.isdigit() else 1}
    last = str(entry).split("/")[0].rsplit(":", 1)[-1]
    return last if last.isdigit() else "1"


def _refused(message: str) -> list[tuple[str, tuple[str, ...]]]:
    """The (service, field path) of each value Compose v1 refused before interpolating it."""
    found = []
    for match in V1_REFUSES_VARIABLE.finditer(message):
        service, _, path = match["where"].partition(".")
        field_path = tuple(path.split("."))
        if field_path[0] in ("ports", "expose"):
            field_path = field_path[:1]  # the whole list: every entry with a ${VARIABLE}
        found.append((service, field_path))
    return found


def _lookup(spec: Any, path: Sequence[str]) -> Any:
    for key in path:
        spec = spec.get(key) if isinstance(spec, dict) else None
    return spec


def _config_of_numbered_copies(
    compose: Compose, raw: Sequence[dict[str, Any]], compose_dir: Path, message: str
) -> dict[str, Any]:
    """``config --no-interpolate`` of copies whose refused variables are numbers.

    The team's own values are put back afterwards: ``ports``/``expose`` are only read (the
    colours have none), any other field is copied into the colours as the team wrote it.
    """
    copies = [copy.deepcopy(doc) for doc in raw]
    refused: set[tuple[str, tuple[str, ...]]] = set()
    config: dict[str, Any] = {}
    for _ in range(3):  # Compose names every refused value at once; a margin all the same
        new = [r for r in _refused(message) if r not in refused]
        if not new:
            raise ScaffoldError(_compose_failure(message, compose.command))
        for service, path in new:
            refused.add((service, path))
            for doc in copies:
                parent = _lookup((doc.get("services") or {}).get(service), path[:-1])
                value = parent.get(path[-1]) if isinstance(parent, dict) else None
                if isinstance(value, list) and path[-1] in ("ports", "expose"):
                    parent[path[-1]] = [_numbered(e) for e in value]
                elif value is not None and "${" in str(value):
                    parent[path[-1]] = 1
        try:
            config = _config_of(compose, copies, compose_dir)
            break
        except ComposeError as exc:
            message = str(exc)
    else:
        raise ScaffoldError(_compose_failure(message, compose.command))
    for service, path in refused:
        spec = (config.get("services") or {}).get(service)
        parent = _lookup(spec, path[:-1])
        if not isinstance(parent, dict):
            continue
        written = [_lookup((doc.get("services") or {}).get(service), path) for doc in raw]
        written = [w for w in written if w is not None]
        if path[-1] in ("ports", "expose"):
            unique = {repr(e): e for entries in written for e in entries}
            parent[path[-1]] = list(unique.values())
        elif written:
            parent[path[-1]] = written[-1]
    return config


def _config_of(compose: Compose, docs: Sequence[dict[str, Any]], compose_dir: Path) -> Any:
    """``config --no-interpolate`` of ``docs``, written to a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bluegreen-init-") as folder:
        paths = []
        for number, doc in enumerate(docs):
            path = Path(folder) / f"compose-{number}.yml"
            path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
            paths.append(path)
        copies = Compose(
            compose.command, tuple(paths), compose.project_name, compose.project_dir,
            compose.env, compose.run_process,
        )  # fmt: skip
        # Relative paths resolve against the team's folder, as they do from its own files.
        text = copies.run(
            "--project-directory", str(compose_dir), "config", "--no-interpolate", timeout=60
        ).stdout
    return yaml.safe_load(text) or {}


def _compose_failure(message: str, command: tuple[str, ...]) -> str:
    """Compose's error as one line, with the way out of v1's known limit."""
    lines = [line.strip() for line in message.splitlines()[1:] if line.strip()]
    detail = " ".join(lines)[:400] or message.splitlines()[0]
    hint = ""
    if command == ("docker-compose",) and V1_REFUSES_VARIABLE.search(detail):
        hint = (
            " (Compose v1 checks some values before it would interpolate ${VARIABLES} in them: "
            "write those as numbers, or use Compose v2, 'docker compose')"
        )
    return f"{' '.join(command)} config --no-interpolate failed: {detail}{hint}"


def env_values(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file, leniently (a line it cannot read is skipped)."""
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and key and not key.startswith("#"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    return values
