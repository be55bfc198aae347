"""A stand-in for the docker CLI whose ``exec`` runs the command here, for the backup adapters.

``docker exec [-i] [-e NAME=VALUE]... CONTAINER COMMAND...`` runs ``COMMAND`` on this machine
with the ``-e`` variables added to the environment, so the adapters' real shell scripts run
against fake database programs put first on ``PATH``. Every argv is logged shell-quoted, one
per line.
"""

from __future__ import annotations

from pathlib import Path

LOCAL_DOCKER = r"""#!/bin/bash
{ printf '%q ' "$@"; echo; } >>"$BG_FAKE_DIR/docker.argv"
[[ $1 == exec ]] || { echo "fake docker: only exec" >&2; exit 2; }
shift
vars=()
while [[ $1 == -* ]]; do
  case $1 in
    -i) shift ;;
    -e) vars+=("$2"); shift 2 ;;
    *) echo "fake docker: unknown option $1" >&2; exit 2 ;;
  esac
done
shift  # the container
exec env "${vars[@]}" "$@"
"""


def install(folder: Path) -> tuple[str, Path]:
    """Write the fake docker into ``folder``; its path, and the folder's argv log."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "docker"
    script.write_text(LOCAL_DOCKER)
    script.chmod(0o755)
    return str(script), folder / "docker.argv"


def program(folder: Path, name: str, text: str) -> Path:
    """An executable ``name`` in ``folder`` (put ``folder`` first on PATH to use it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    path.chmod(0o755)
    return path
