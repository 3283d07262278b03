"""The ``replicas`` router: the weight is the canary's share of ready pods behind the apex Service.

With no mesh or ingress, a Service spreads requests evenly over its ready
endpoints, so the canary's share of traffic is its share of ready pods. The
primary keeps its full size (no capacity is taken from the stable version);
the canary gets ``ceil(N * w / (100 - w))`` replicas for a weight ``w`` and a
primary of ``N`` replicas. Small primaries make coarse weights (1 canary pod
next to 2 primary pods is 33%, whatever was asked): the router reports the
weight it really achieved. The canary is capped at 9x the primary (90%).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from canary_operator import kube, models, routing
from canary_operator.routing import weighted

MAX_WEIGHT = 90


def canary_replicas(weight: int, primary_replicas: int) -> int:
    # No primary pods (a target scaled to 0) means any canary pod would take all the traffic: none then.
    if weight <= 0 or primary_replicas <= 0:
        return 0
    weight = min(weight, MAX_WEIGHT)
    return max(1, math.ceil(primary_replicas * weight / (100 - weight)))


class ReplicasRouter:
    def __init__(self, api: kube.Client) -> None:
        self.api = api

    async def reconcile(self, rollout: Mapping[str, Any]) -> None:
        """Nothing to check: the apex Service is the operator's own (see workloads)."""

    async def finalize(self, rollout: Mapping[str, Any]) -> None:
        """Nothing of the user's was changed."""

    async def set_weight(
        self, arms: routing.Arms, weight: int, primary_replicas: int, route: models.RouteMatch | None = None
    ) -> None:
        # A header or cookie route is refused at admission for this router (models.route_problems).
        await weighted.scale_canary(self.api, arms, canary_replicas(weight, primary_replicas))

    async def observe(
        self, arms: routing.Arms, weight: int, primary_replicas: int, route: models.RouteMatch | None = None
    ) -> routing.TrafficState:
        canary_ready = arms.canary.ready_replicas if arms.canary else 0
        primary_ready = arms.primary.ready_replicas if arms.primary else 0
        wanted = canary_replicas(weight, primary_replicas)
        settled = (
            arms.canary is not None
            and arms.canary.replicas == wanted
            and arms.canary.rolled_out
            and canary_ready == wanted
            and primary_ready >= primary_replicas
        )
        return routing.TrafficState(weight=weighted.percent(canary_ready, primary_ready), settled=settled)
