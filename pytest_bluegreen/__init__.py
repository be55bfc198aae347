"""pytest-bluegreen: zero-downtime blue-green deploys of a Compose stack behind HAProxy."""

from pytest_bluegreen.colours import Colour, other_colour
from pytest_bluegreen.errors import BluegreenError

__all__ = ["BluegreenError", "Colour", "other_colour"]
__version__ = "0.1.0"
