"""The NGINX Ingress router: a canary Ingress cloned from the user's, with the controller's canary annotations.

The NGINX Ingress Controller sends ``canary-weight`` percent of the requests for a
host and path to the backend of an Ingress annotated ``canary: "true"`` for the same
host and path; ``canary-by-header`` (with ``-value`` or ``-pattern``) and
``canary-by-cookie`` (value ``always``) send chosen requests to it first. The user's
Ingress is read, never written: it must send to the apex Service, which for this
router selects the primary's pods only. The canary Ingress ``<ingress>-canary`` is the
operator's (owner reference), derived anew from the user's Ingress on every tick, and
deleted on finalize.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from canary_operator import kube, models, names, ownership, routing, workloads
from canary_operator.routing import weighted

PREFIX = "nginx.ingress.kubernetes.io/"
CANARY = PREFIX + "canary"
WEIGHT = PREFIX + "canary-weight"
WEIGHT_TOTAL = PREFIX + "canary-weight-total"
BY_HEADER = PREFIX + "canary-by-header"
BY_HEADER_VALUE = PREFIX + "canary-by-header-value"
BY_HEADER_PATTERN = PREFIX + "canary-by-header-pattern"
BY_COOKIE = PREFIX + "canary-by-cookie"
_CANARY_KEYS = (CANARY, WEIGHT, WEIGHT_TOTAL, BY_HEADER, BY_HEADER_VALUE, BY_HEADER_PATTERN, BY_COOKIE)


def ingress_path(namespace: str, name: str | None = None) -> str:
    return kube.object_path("/apis/networking.k8s.io/v1", "ingresses", namespace, name)


def canary_ingress_name(ingress: str) -> str:
    return f"{ingress}-canary"


def _backends(spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    if spec.get("defaultBackend"):
        yield spec["defaultBackend"]
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            yield path.get("backend") or {}


def route_annotations(weight: int, route: models.RouteMatch | None) -> dict[str, str]:
    annotations = {CANARY: "true", WEIGHT: str(weight), WEIGHT_TOTAL: "100"}
    if isinstance(route, models.HeaderRoute):
        (match,) = route.match  # the model refuses more than one header for this router
        annotations[BY_HEADER] = match.header_name
        if match.header_value.kind == "exact":
            annotations[BY_HEADER_VALUE] = match.header_value.value
        else:
            annotations[BY_HEADER_PATTERN] = match.header_value.value
    elif isinstance(route, models.CookieRoute) and route.cookie_name:
        annotations[BY_COOKIE] = route.cookie_name
    return annotations


class NginxRouter:
    kind = "Ingress"

    def __init__(self, api: kube.Client, config: models.NginxRouting, rollout: Mapping[str, Any], target: str) -> None:
        self.api = api
        self.reads = weighted.Reads(api)
        self.config = config
        self.rollout = rollout
        self.target = target

    async def _user_ingress(self, namespace: str) -> dict[str, Any]:
        ingress = await self.reads.get(ingress_path(namespace, self.config.ingress))
        if ingress is None:
            raise routing.RouterError(models.Reason.ROUTE_NOT_FOUND, f"Ingress {self.config.ingress} not found")
        annotations = (ingress.get("metadata") or {}).get("annotations") or {}
        if annotations.get(CANARY) == "true":
            raise routing.RouterError(
                models.Reason.ROUTE_BACKENDS_WRONG,
                f"Ingress {self.config.ingress} is itself a canary Ingress; name the main one",
            )
        found = sorted({str((b.get("service") or {}).get("name")) for b in _backends(ingress.get("spec") or {})})
        if found != [self.target]:
            raise routing.RouterError(
                models.Reason.ROUTE_BACKENDS_WRONG,
                f"Ingress {self.config.ingress} must send to Service {self.target} only (found"
                f" {', '.join(found) or 'no backends'}); the canary Ingress sends to"
                f" {names.canary(self.target)}",
            )
        return ingress

    async def _canary_ingress(self, namespace: str) -> dict[str, Any] | None:
        name = canary_ingress_name(self.config.ingress)
        found = await self.reads.get(ingress_path(namespace, name))
        if found is None:
            return None
        if not ownership.owned_by(found, self.rollout):
            raise routing.RouterError(
                models.Reason.ROUTE_CONFLICT, f"Ingress {name} exists and is not managed by this CanaryRollout"
            )
        return found

    async def reconcile(self, rollout: Mapping[str, Any]) -> None:
        namespace = rollout["metadata"]["namespace"]
        await self._user_ingress(namespace)
        await self._canary_ingress(namespace)

    def _desired(
        self, user: Mapping[str, Any], namespace: str, weight: int, route: models.RouteMatch | None
    ) -> dict[str, Any]:
        spec = weighted.deep(user.get("spec") or {})
        spec.pop("tls", None)  # the main Ingress terminates TLS for the host; NGINX merges the canary into it
        for backend in _backends(spec):
            backend["service"] = {**backend["service"], "name": names.canary(self.target)}
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": canary_ingress_name(self.config.ingress),
                "namespace": namespace,
                "labels": {workloads.ROLLOUT_LABEL: self.rollout["metadata"]["name"], **workloads.MANAGED_BY},
                "annotations": route_annotations(weight, route),
                "ownerReferences": [workloads.owner_reference(self.rollout)],
            },
            "spec": spec,
        }

    @staticmethod
    def weight_of(canary: Mapping[str, Any] | None) -> int:
        annotations = ((canary or {}).get("metadata") or {}).get("annotations") or {}
        if annotations.get(CANARY) != "true":
            return 0
        try:
            weight = int(annotations.get(WEIGHT, "0"))
            total = int(annotations.get(WEIGHT_TOTAL, "100"))
        except ValueError:
            return 0
        return weighted.percent(weight, total - weight)

    @staticmethod
    def _differs(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
        if current is None:
            return True
        annotations = {
            k: v for k, v in ((current.get("metadata") or {}).get("annotations") or {}).items() if k in _CANARY_KEYS
        }
        return bool(annotations != desired["metadata"]["annotations"] or current.get("spec") != desired["spec"])

    async def set_weight(
        self, arms: routing.Arms, weight: int, primary_replicas: int, route: models.RouteMatch | None = None
    ) -> None:
        namespace = arms.namespace
        user = await self._user_ingress(namespace)
        current = await self._canary_ingress(namespace)
        desired = self._desired(user, namespace, weight, route)

        async def write(current: dict[str, Any] | None) -> dict[str, Any] | None:
            path = ingress_path(namespace, canary_ingress_name(self.config.ingress))
            if current is None:
                return self.reads.wrote(path, await self.api.create(ingress_path(namespace), desired))
            patch = {
                "metadata": {
                    "resourceVersion": current["metadata"].get("resourceVersion"),
                    "annotations": {
                        **{k: None for k in current["metadata"].get("annotations") or {} if k in _CANARY_KEYS},
                        **desired["metadata"]["annotations"],
                    },
                },
                "spec": desired["spec"],
            }
            return self.reads.wrote(path, await self.api.patch(path, patch))

        await weighted.shift(
            self.api,
            arms,
            weighted.canary_size(weight, route, primary_replicas),
            started=current is not None,
            more=weight > self.weight_of(current) or route is not None,
            route=current,
            differs=lambda current: self._differs(current, desired),
            write=write,
        )

    async def observe(
        self, arms: routing.Arms, weight: int, primary_replicas: int, route: models.RouteMatch | None = None
    ) -> routing.TrafficState:
        user = await self._user_ingress(arms.namespace)
        current = await self._canary_ingress(arms.namespace)
        wanted = weighted.canary_size(weight, route, primary_replicas)
        desired = self._desired(user, arms.namespace, weight, route)
        canary_ok = (
            weighted.canary_ready(arms, wanted) if wanted > 0 else arms.canary is None or arms.canary.replicas == 0
        )
        routed_ok = not self._differs(current, desired) or (current is None and weight == 0 and route is None)
        return routing.TrafficState(
            weight=self.weight_of(current), settled=routed_ok and canary_ok and weighted.primary_ready(arms)
        )

    async def finalize(self, rollout: Mapping[str, Any]) -> None:
        namespace = rollout["metadata"]["namespace"]
        name = canary_ingress_name(self.config.ingress)
        found = await self.api.get(ingress_path(namespace, name))
        if found is not None and ownership.owned_by(found, rollout):
            await self.api.delete(ingress_path(namespace, name))
