"""The two colours of a blue-green deployment."""

from __future__ import annotations

from typing import Final, Literal, TypeGuard

Colour = Literal["blue", "green"]
COLOURS: Final[tuple[Colour, Colour]] = ("blue", "green")


def is_colour(value: object) -> TypeGuard[Colour]:
    return value in COLOURS


def other_colour(colour: Colour) -> Colour:
    """The idle colour when ``colour`` is live, and the other way round."""
    return "green" if colour == "blue" else "blue"
