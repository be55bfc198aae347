"""Container engines: Compose on one host, a Docker Swarm stack; the engine registry.

The settings' ``engine`` picks one here and nowhere else: the rest of the package asks the
engine it was given (its router kind, whether its containers run on this host), never which
one it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Final, Protocol, cast

from pytest_bluegreen.adapters.registry import entry, load
from pytest_bluegreen.core.colours import Colour
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.ports import Progress, Router, Stack

if TYPE_CHECKING:
    from pytest_bluegreen.adapters.engines.project import Project

ENGINES: Final = {
    "compose": "pytest_bluegreen.adapters.engines.compose:ComposeStack",
    "swarm": "pytest_bluegreen.adapters.engines.swarm:SwarmStack",
}


class Engine(Stack, Protocol):
    """A stack on one kind of engine, as the host, the commands and the fixtures use it.

    ``router_kind`` names the router (:mod:`pytest_bluegreen.adapters.routers`) that fronts
    it; ``runs_on_this_host`` says whether its containers are on the engine this process
    reaches (``docker exec`` into them works).
    """

    router_kind: ClassVar[str]
    runs_on_this_host: ClassVar[bool]
    project: Project
    router: Router

    def __init__(
        self, config: StackConfig, progress: Progress = ..., *, router: Router | None = None
    ) -> None: ...
    @property
    def config(self) -> StackConfig: ...
    def database_container(self, service: str) -> str: ...
    def up(self, colours: Sequence[Colour] = ..., live: Colour = ...) -> None: ...
    def down(self, *, volumes: bool = False) -> None: ...


def engine_class(name: str) -> type[Engine]:
    """The engine class registered under ``name``; a ConfigError names the known ones."""
    return cast("type[Engine]", load(entry(ENGINES, name, "engine")))


def open_engine(
    config: StackConfig, progress: Progress = lambda message: None, router: Router | None = None
) -> Engine:
    """The stack on the engine the settings name (it reaches Docker: it fails without it)."""
    return engine_class(config.engine.name)(config, progress, router=router)


def router_kind(config: StackConfig) -> str:
    """The kind of router that fronts the settings' engine (no Docker needed)."""
    return engine_class(config.engine.name).router_kind


def runs_on_this_host(config: StackConfig) -> bool:
    """Whether the settings' engine runs the containers on the engine this process reaches."""
    return engine_class(config.engine.name).runs_on_this_host
