"""``bluegreen``: the one-shot commands of ``pytest --bg-*``, and the stack up or down.

``bluegreen status``, ``plan``, ``switch``, ``rollback`` and ``retire`` run the same
:mod:`pytest_bluegreen.commands` as ``pytest --bg-status``, ``--bg-dry-run``, ``--bg-switch``,
``--bg-rollback`` and ``--bg-retire``; ``up`` and ``down`` bring a stack up or down for a first
deploy or a development machine. ``init`` adopts the plugin on a team's one-colour Compose file
and ``doctor`` checks a stack is ready to deploy (:mod:`pytest_bluegreen.scaffold`). Errors are one
line, ``bluegreen: error: ...``, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pytest_bluegreen import commands
from pytest_bluegreen.core.colours import COLOURS, Colour
from pytest_bluegreen.core.config import load_config
from pytest_bluegreen.core.errors import BluegreenError
from pytest_bluegreen.core.ports import Progress
from pytest_bluegreen.plugin import release_id
from pytest_bluegreen.scaffold.doctor import run_doctor
from pytest_bluegreen.scaffold.haproxy_cfg import TLS_MODES
from pytest_bluegreen.scaffold.init import run_init


def progress_printer() -> Progress:
    """Progress lines on stderr, each with the time since the command started."""
    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return say


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bluegreen", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    parser.add_argument("--config", type=Path, help="settings file (default: pyproject.toml)")
    parser.add_argument(
        "-f",
        "--compose-file",
        type=Path,
        action="append",
        help="Compose file, repeatable and layered like 'docker compose -f a -f b'",
    )
    parser.add_argument("--project-name", help="Compose project name (default: from settings)")
    verbs = parser.add_subparsers(dest="command", required=True)
    up = verbs.add_parser("up", help="build and start the stack, every service healthy")
    up.add_argument("--colour", choices=COLOURS, action="append", help="colours to start")
    up.add_argument("--live", choices=COLOURS, default="blue", help="live colour on a new stack")
    down = verbs.add_parser("down", help="stop and remove the stack's containers")
    down.add_argument("--volumes", action="store_true", help="also delete the database volume")
    switch = verbs.add_parser("switch", help="send new requests to a colour (runtime API)")
    switch.add_argument("colour", nargs="?", choices=COLOURS, help="default: the idle colour")
    verbs.add_parser("status", help="live colour and the state of every server")
    plan = verbs.add_parser("plan", help="what a deploy of RELEASE would do; changes nothing")
    plan.add_argument("release", type=release_id, help="the release (image tag) to deploy")
    verbs.add_parser("rollback", help="switch back to the previous colour, verified")
    retire = verbs.add_parser("retire", help="stop a colour after a delay, unless live again")
    retire.add_argument("colour", choices=COLOURS)
    retire.add_argument("--after", type=float, default=0.0, help="seconds to wait first")
    init = verbs.add_parser(
        "init", help="adopt the plugin: the blue-green layer for a one-colour Compose file"
    )
    # SUPPRESS: given after the verb they win, absent they leave the ones before it alone.
    init.add_argument("--project-dir", type=Path, default=argparse.SUPPRESS)
    init.add_argument(
        "-f",
        "--compose-file",
        type=Path,
        action="append",
        default=argparse.SUPPRESS,
        help="the team's Compose file, repeatable (default: the settings', else compose.yaml...)",
    )
    init.add_argument("--force", action="store_true", help="replace generated files that differ")
    init.add_argument(
        "--tls", choices=tuple(TLS_MODES), help="TLS at HAProxy when no settings say (self-signed)"
    )
    doctor = verbs.add_parser("doctor", help="check the stack is ready to deploy, one line each")
    doctor.add_argument("--project-dir", type=Path, default=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "init":  # before any settings exist
            run_init(args.project_dir, args.compose_file, args.force, args.tls)
            return 0
        if args.command == "doctor":  # reports bad settings as one of its checks
            return run_doctor(args.project_dir)
        config = load_config(
            args.project_dir, args.config, args.compose_file, project_name=args.project_name
        )
        if args.command == "status":  # needs no Docker
            print(commands.status(config))
        elif args.command == "plan":
            print(commands.plan(config, args.release))
        elif args.command == "switch":  # HAProxy's runtime API only: no Docker needed
            print(commands.switch(config, args.colour))
        elif args.command == "rollback":
            print(commands.rollback(config, progress_printer()))
        elif args.command == "retire":
            time.sleep(args.after)
            print(commands.retire(config, args.colour, progress_printer()))
        else:
            stack = commands.stack_for(config, progress_printer())
            if args.command == "up":
                colours: list[Colour] = args.colour or list(COLOURS)
                stack.up(colours, live=args.live)
                print(
                    f"live colour: {stack.router.active_colour()}; public URL: {config.public_url}"
                )
            else:
                stack.down(volumes=args.volumes)
    except BluegreenError as exc:
        print(f"bluegreen: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
