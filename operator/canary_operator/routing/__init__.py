"""Traffic routers: how a weight becomes traffic, behind one small Protocol.

A router is asked to *set* a weight (idempotently, every tick) and to *observe*
the weight it actually achieved; the state machine only advances on the
observed weight, never on the one it asked for. One module per router, chosen
by ``for_rollout``, which fails loudly on an unknown kind.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from canary_operator import kube, models, observations

TrafficState = observations.Traffic


@dataclasses.dataclass(frozen=True)
class Arms:
    """The two Deployments as observed this tick (None when absent)."""

    namespace: str
    target: str
    primary: observations.Workload | None
    canary: observations.Workload | None


class TrafficRouter(Protocol):
    async def set_weight(self, arms: Arms, weight: int, primary_replicas: int) -> None:
        """Route ``weight`` percent of traffic to the canary; a no-op when already so."""
        ...

    async def observe(self, arms: Arms, weight: int, primary_replicas: int) -> TrafficState:
        """The weight actually in force, and whether it is the one asked for."""
        ...


class UnknownRouterError(ValueError):
    pass


def for_rollout(spec: models.CanaryRolloutSpec, api: kube.Client) -> TrafficRouter:
    kind = spec.traffic_routing.kind
    if kind == "replicas":
        from canary_operator.routing import replicas

        return replicas.ReplicasRouter(api)
    raise UnknownRouterError(f"unknown traffic router {kind!r}")
