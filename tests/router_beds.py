"""Test beds for the routers: an emulated cluster holding the user's route objects (with the real CRDs' schemas),
a CanaryRollout, its two arms as real Deployments made ready by the bench's Deployment controller, and the
operator's own API client. Tests call the router the way a tick does and assert the objects a user sees."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from helpers import deployment

from canary_bench import cluster as clusters
from canary_operator import kube, models, routing, workloads
from canary_operator.routing import gatewayapi, istio, nginx

NS = "shop"
ROLLOUTS = f"/apis/canary.dev/v1alpha1/namespaces/{NS}/canaryrollouts"
DEPLOYMENTS = kube.deployment_path(NS)
PRIMARY_REPLICAS = 4

HTTP_ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "web", "namespace": NS, "labels": {"team": "shop"}},
    "spec": {
        "parentRefs": [{"name": "public", "namespace": "gateways"}],
        "hostnames": ["shop.example.com"],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                "backendRefs": [{"name": "static", "port": 80}],
            },
            {
                "name": "app",
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"add": [{"name": "x-env", "value": "prod"}]},
                    }
                ],
                "backendRefs": [{"name": "web", "port": 80}],
                "timeouts": {"request": "10s"},
            },
        ],
    },
}

VIRTUAL_SERVICE: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "web", "namespace": NS},
    "spec": {
        "hosts": ["shop.example.com"],
        "gateways": ["istio-system/public"],
        "http": [
            {
                "name": "static",
                "match": [{"uri": {"prefix": "/static"}}],
                "route": [{"destination": {"host": "static"}}],
            },
            {
                "name": "app",
                "match": [{"uri": {"prefix": "/"}}],
                "route": [{"destination": {"host": "web.shop.svc.cluster.local", "port": {"number": 80}}}],
                "retries": {"attempts": 3, "perTryTimeout": "2s"},
                "timeout": "10s",
            },
        ],
    },
}

DESTINATION_RULE: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "web", "namespace": NS},
    "spec": {
        "host": "web",
        "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}},
        "subsets": [
            {"name": "stable", "labels": {workloads.ARM_LABEL: "primary"}},
            {"name": "preview", "labels": {workloads.ARM_LABEL: "canary"}},
        ],
    },
}

INGRESS: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {
        "name": "web",
        "namespace": NS,
        "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
    },
    "spec": {
        "ingressClassName": "nginx",
        "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
        "rules": [
            {
                "host": "shop.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ],
    },
}


def _subset_vs() -> dict[str, Any]:
    vs = copy.deepcopy(VIRTUAL_SERVICE)
    vs["spec"]["http"][1]["route"] = [{"destination": {"host": "web", "port": {"number": 80}}}]
    return vs


@dataclasses.dataclass(frozen=True)
class Kind:
    """One router as the tests drive it: its spec, the user's objects, and where its split is read."""

    name: str
    routing: dict[str, Any]
    objects: tuple[tuple[str, dict[str, Any]], ...]  # (collection path, manifest)
    route_path: str  # the object whose split the tests read (the canary Ingress for nginx)
    user_path: str  # the user's object the router must give back exactly

    def split(self, obj: dict[str, Any] | None) -> dict[str, int]:
        """Weights per destination, read from the raw object as the data plane would (not by the router)."""
        if obj is None:
            return {}
        if self.name == "gatewayAPI":
            rule = next(r for r in obj["spec"]["rules"] if r.get("name") == "app")
            return {ref["name"]: ref.get("weight", 1) for ref in rule["backendRefs"]}
        if self.name.startswith("istio"):
            route = next(r for r in obj["spec"]["http"] if r.get("name") == "app")
            return {
                (d["destination"].get("subset") or d["destination"]["host"]): d.get("weight", 100)
                for d in route["route"]
            }
        annotations = obj["metadata"].get("annotations") or {}
        weight = int(annotations.get(nginx.WEIGHT, "0"))
        return {"web": 100 - weight, "web-canary": weight}


KINDS = {
    "gatewayAPI": Kind(
        "gatewayAPI",
        {"gatewayAPI": {"httpRoute": "web"}},
        ((f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes", HTTP_ROUTE),),
        gatewayapi.route_path(NS, "web"),
        gatewayapi.route_path(NS, "web"),
    ),
    "istio": Kind(
        "istio",
        {"istio": {"virtualService": "web"}},
        ((f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices", VIRTUAL_SERVICE),),
        istio.virtual_service_path(NS, "web"),
        istio.virtual_service_path(NS, "web"),
    ),
    "istio-subsets": Kind(
        "istio-subsets",
        {
            "istio": {
                "virtualService": "web",
                "destinationRule": {"name": "web", "primarySubset": "stable", "canarySubset": "preview"},
            }
        },
        (
            (f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices", _subset_vs()),
            (f"/apis/networking.istio.io/v1/namespaces/{NS}/destinationrules", DESTINATION_RULE),
        ),
        istio.virtual_service_path(NS, "web"),
        istio.virtual_service_path(NS, "web"),
    ),
    "nginx": Kind(
        "nginx",
        {"nginx": {"ingress": "web"}},
        ((nginx.ingress_path(NS), INGRESS),),
        nginx.ingress_path(NS, "web-canary"),
        nginx.ingress_path(NS, "web"),
    ),
}

# What each router names its two arms in the split, as read by Kind.split.
ARM_NAMES = {
    "gatewayAPI": ("web-primary", "web-canary"),
    "istio": ("web-primary.shop.svc.cluster.local", "web-canary.shop.svc.cluster.local"),
    "istio-subsets": ("stable", "preview"),
    "nginx": ("web", "web-canary"),
}


def rollout_manifest(trafficrouting: dict[str, Any], steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "canary.dev/v1alpha1",
        "kind": "CanaryRollout",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "targetRef": {"name": "web"},
            "service": {"port": 80},
            "trafficRouting": trafficrouting,
            "steps": steps or [{"setWeight": 10}, {"setWeight": 50}],
            "analysis": {
                "prometheus": {"address": "http://127.0.0.1:9090"},
                "metrics": [{"name": "errors", "template": "error-rate", "max": 1}],
            },
        },
    }


def comparable(obj: dict[str, Any] | None) -> dict[str, Any]:
    """An object as a user compares it: without what the API server changes on every write."""
    assert obj is not None
    found = copy.deepcopy(obj)
    for key in ("resourceVersion", "generation", "managedFields"):
        found["metadata"].pop(key, None)
    return found


class Bed:
    def __init__(self, cluster: clusters.EmulatedCluster, kind: Kind, api: kube.Client) -> None:
        self.cluster = cluster
        self.kind = kind
        self.api = api
        for collection, manifest in kind.objects:
            cluster.create(collection, manifest)
        self.rollout = cluster.create(ROLLOUTS, rollout_manifest(kind.routing))
        self.spec = models.parse_spec(self.rollout["spec"])
        target = deployment("web", replicas=0)
        self.cluster.create(DEPLOYMENTS, target)
        template = target["spec"]["template"]
        for arm, replicas in (("primary", PRIMARY_REPLICAS), ("canary", 0)):
            self.cluster.create(
                DEPLOYMENTS, workloads.arm_deployment(self.rollout, target, arm, template, "rev1", replicas)
            )
        for service in workloads.services(self.rollout, self.spec):
            self.cluster.create(kube.service_path(NS), service)
        self.wait_ready("web-primary")

    @property
    def router(self) -> routing.TrafficRouter:
        """A router for one call, as the operator makes one for each tick (it keeps its reads for that tick)."""
        return self.fresh_router()

    def fresh_router(self, api: kube.Client | None = None) -> routing.TrafficRouter:
        """The router as a restarted operator builds it: nothing kept in memory."""
        return routing.for_rollout(self.spec, api or self.api, self.rollout)

    def arms(self) -> routing.Arms:
        return routing.Arms(
            NS,
            "web",
            workloads.workload_of(self.cluster.deployment(NS, "web-primary")),
            workloads.workload_of(self.cluster.deployment(NS, "web-canary")),
        )

    def wait_ready(self, name: str) -> None:
        def ready() -> bool:
            workload = workloads.workload_of(self.cluster.deployment(NS, name))
            return workload is not None and workload.rolled_out

        self.cluster.wait_for(ready, timeout=10, interval=0.02, message=f"{name} ready")

    def route(self) -> dict[str, Any] | None:
        return self.cluster.get(self.kind.route_path)

    def split(self) -> dict[str, int]:
        return self.kind.split(self.route())

    def canary_share(self) -> int:
        primary, canary = ARM_NAMES[self.kind.name]
        split = self.split()
        total = split.get(primary, 0) + split.get(canary, 0)
        return 0 if total == 0 else round(100 * split.get(canary, 0) / total)

    async def settle(self, weight: int, route: models.RouteMatch | None = None) -> routing.TrafficState:
        """Tick until the router reports the weight settled, the way the state machine waits for it."""
        for _ in range(50):
            await self.router.set_weight(self.arms(), weight, PRIMARY_REPLICAS, route)
            state = await self.router.observe(self.arms(), weight, PRIMARY_REPLICAS, route)
            if state.settled:
                return state
            self.wait_ready("web-canary")
        raise AssertionError(f"weight {weight} never settled; split {self.split()}")
