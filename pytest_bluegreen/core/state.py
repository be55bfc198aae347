"""The recorded colour state: which colour is live and which release each colour runs.

HAProxy is the truth for where traffic goes; this file is the memory beside it (releases, the
last deploy) and the cross-check that tells when someone switched by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pytest_bluegreen.core.colours import COLOURS, Colour, is_colour
from pytest_bluegreen.core.errors import ConfigError
from pytest_bluegreen.core.files import write_atomically


@dataclass(slots=True)
class ColourState:
    """``retired``: colours this tool stopped (or was about to stop) since they last started.

    A rollback to a colour not in it sends traffic at once, with HAProxy's check of its servers
    as the witness; a retired colour is first started again. Marked before a stop, so a stop
    that fails half-way errs on the side of starting it again.
    """

    live: Colour | None = None
    releases: dict[Colour, str] = field(default_factory=dict)
    last_deploy: str | None = None
    retired: set[Colour] = field(default_factory=set)

    def release_env(self) -> dict[str, str]:
        """``BLUE_RELEASE``/``GREEN_RELEASE`` for Compose, so no command retags a colour."""
        return {f"{c.upper()}_RELEASE": r for c, r in self.releases.items()}


def load_state(path: Path) -> ColourState:
    if not path.is_file():
        return ColourState()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        live = data.get("live")
        releases = {c: str(r) for c, r in data.get("releases", {}).items() if is_colour(c)}
        return ColourState(
            live=live if is_colour(live) else None,
            releases=releases,
            last_deploy=data.get("last_deploy"),
            retired={c for c in data.get("retired", []) if is_colour(c)},
        )
    except (ValueError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a valid state file ({exc}); move it away") from None


def save_state(path: Path, state: ColourState) -> None:
    """Write atomically: a deploy killed half-way must not leave a torn file."""
    data = {
        "live": state.live,
        "releases": {c: state.releases[c] for c in COLOURS if c in state.releases},
        "last_deploy": state.last_deploy,
        "retired": [c for c in COLOURS if c in state.retired],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(data, indent=2) + "\n", mode=0o644)
