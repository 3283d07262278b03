"""Traffic routers: how a weight becomes traffic, behind one small Protocol.

A router checks (``reconcile``) that the objects it needs exist and are its to
change, is asked to *set* a weight and a header or cookie route (idempotently,
every tick) and to *observe* the weight it actually achieved, read back from the
cluster; the state machine only advances on the observed weight, never on the
one it asked for. ``finalize`` gives back what it changed. One module per
router, chosen by ``for_rollout``, which fails loudly on an unknown kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from canary_operator import kube, models, observations

TrafficState = observations.Traffic


@dataclasses.dataclass(frozen=True)
class Arms:
    """The two Deployments as observed this tick (None when absent)."""

    namespace: str
    target: str
    primary: observations.Workload | None
    canary: observations.Workload | None


class RouterError(Exception):
    """The router cannot do its job until the user acts; ``reason`` becomes the condition's reason."""

    def __init__(self, reason: models.Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TrafficRouter(Protocol):
    async def reconcile(self, rollout: Mapping[str, Any]) -> None:
        """Check the objects the router needs; RouterError when one is missing, wrong or someone else's."""
        ...

    async def set_weight(
        self, arms: Arms, weight: int, primary_replicas: int, route: models.RouteMatch | None = None
    ) -> None:
        """Route ``weight`` percent (and ``route``'s requests) to the canary; a no-op when already so."""
        ...

    async def observe(
        self, arms: Arms, weight: int, primary_replicas: int, route: models.RouteMatch | None = None
    ) -> TrafficState:
        """The weight actually in force, and whether it (and the route) is the one asked for."""
        ...

    async def finalize(self, rollout: Mapping[str, Any]) -> None:
        """Give back every user object the router changed, exactly as it was; remove what it created."""
        ...


class UnknownRouterError(ValueError):
    pass


def route_in_force(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus) -> models.RouteMatch | None:
    """The header or cookie route the current step wants, derived like the weight (none while idle)."""
    if status.phase in models.EXPOSED_PHASES:
        return models.step_route(spec.steps, min(status.current_step_index or 0, len(spec.steps) - 1))
    return None


def for_rollout(spec: models.CanaryRolloutSpec, api: kube.Client, rollout: Mapping[str, Any]) -> TrafficRouter:
    """The router the spec names, working for the CanaryRollout object ``rollout`` (its name marks what it changes).

    A router serves one tick: it reads each object it uses once and keeps it for that tick (make a new one for
    the next, so that it reads the user's changes)."""
    routing = spec.traffic_routing
    target = spec.target_ref.name
    match routing.kind:
        case "replicas":
            from canary_operator.routing import replicas

            return replicas.ReplicasRouter(api)
        case "gatewayAPI":
            from canary_operator.routing import gatewayapi

            assert routing.gateway_api is not None
            return gatewayapi.GatewayAPIRouter(api, routing.gateway_api, rollout, target)
        case "istio":
            from canary_operator.routing import istio

            assert routing.istio is not None
            return istio.IstioRouter(api, routing.istio, rollout, target)
        case "nginx":
            from canary_operator.routing import nginx

            assert routing.nginx is not None
            return nginx.NginxRouter(api, routing.nginx, rollout, target)
    raise UnknownRouterError(f"unknown traffic router {routing.kind!r}")
