"""Errors a user can act on: each message says what went wrong and what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_bluegreen.core.colours import Colour


class BluegreenError(Exception):
    """Base of every error pytest-bluegreen raises on purpose."""


class ConfigError(BluegreenError):
    """The configuration is missing, unreadable, or has a wrong key or value."""


class DockerUnavailable(BluegreenError):
    """No Docker engine or no Compose can be reached."""


class ComposeError(BluegreenError):
    """A Compose command failed; the message carries its output."""


class CommandTimeout(ComposeError):
    """A command the deploy ran did not finish within its bound (what it started is removed)."""


class DiskFull(BluegreenError):
    """No space left where Docker keeps its images (or where a file had to be written)."""


class PortInUse(BluegreenError):
    """A port the stack publishes is taken by another program."""


class StackError(BluegreenError):
    """A service of the stack did not start or did not become healthy."""


class RouterError(BluegreenError):
    """HAProxy's runtime API is unreachable or refused a command."""


class NotReadyError(RouterError):
    """A switch was refused before any change: the router does not see the colour's servers UP."""


class LiveColourChanged(RouterError):
    """A switch was refused before any change: the router serves another colour than expected."""

    def __init__(self, live: Colour, expected: Colour) -> None:
        super().__init__(f"HAProxy serves {live}, not {expected} as expected: nothing switched")
        self.live = live


class BackupError(BluegreenError):
    """The pre-deploy backup could not be made, stored or verified."""


class LockError(BluegreenError):
    """Another deploy holds the lock of this stack."""


class DeployError(BluegreenError):
    """A deploy stage failed; the message says which and why."""
