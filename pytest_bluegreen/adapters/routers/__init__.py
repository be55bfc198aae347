"""Traffic routers: HAProxy's runtime API, one instance or every replica; the registry.

The kind of router follows the engine (each engine class names its ``router_kind``): one
HAProxy beside a Compose stack, every loadbalancer replica of a swarm. Opening one needs no
Docker (``bluegreen status`` reads the live colour this way); a replicated router asks the
swarm for its replicas only when it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol, cast

from pytest_bluegreen.adapters.engines import router_kind
from pytest_bluegreen.adapters.registry import entry, load
from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.ports import Router


class MapRouter(Router, Protocol):
    """A router whose switch is ``set map`` on a map inside the loadbalancer."""

    map_in_container: str


@dataclass(frozen=True, slots=True)
class RouterKind:
    """One kind of router: where its factory is, and what a switch reaches (for the plan)."""

    factory: str  # "module:function", given the settings
    reach: str


ROUTERS: Final = {
    "haproxy": RouterKind(
        "pytest_bluegreen.adapters.routers.haproxy:haproxy_router", "runtime API"
    ),
    # Its replicas are found through the swarm's tasks: the factory is the swarm engine's.
    "haproxy-replicas": RouterKind(
        "pytest_bluegreen.adapters.engines.swarm:swarm_router",
        "runtime API, every loadbalancer replica, confirmed on each",
    ),
}


def kind_of(config: StackConfig) -> RouterKind:
    """The kind of router of the settings' engine; a ConfigError for an unknown kind."""
    return entry(ROUTERS, router_kind(config), "router")


def router_for(config: StackConfig) -> MapRouter:
    """The stack's router, as its engine's router kind says."""
    return cast(MapRouter, load(kind_of(config).factory)(config))
