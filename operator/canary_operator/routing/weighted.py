"""What the routers that split by weight in a gateway or mesh share: the canary's size, the order of writes,
and the bookkeeping of a user object the operator changes.

Order of writes, so that no request reaches a pod that cannot answer it: the
canary is scaled up and must be ready before the route sends it anything more;
less traffic (a rollback to 0) is written at once; the canary is scaled down only
once the route, read back, no longer sends it more than its new share.

A user object the router changes (an HTTPRoute, a VirtualService) carries two
annotations, written in the same patch as the first change, so that no crash can
separate them from it: who manages it, and its spec as it was before. Deleting the
CanaryRollout undoes exactly the router's changes; a test compares the object
before and after.
"""

from __future__ import annotations

import abc
import copy
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from canary_operator import kube, models, names, routing

MANAGER_ANNOTATION = "canary.dev/managed-by"
ORIGINAL_ANNOTATION = "canary.dev/original-spec"
ADDED_PREFIX = "canary-dev-"  # names of the header/cookie routes the operator adds to a user's route

Route = TypeVar("Route")


def the_one(found: list[int], missing: str, ambiguous: str) -> int:
    """The index of the one rule (route) to split; a RouterError saying why when there is none or more than one."""
    if not found:
        raise routing.RouterError(models.Reason.ROUTE_RULE_NOT_FOUND, missing)
    if len(found) > 1:
        raise routing.RouterError(models.Reason.ROUTE_RULE_AMBIGUOUS, ambiguous)
    return found[0]


def canary_size(weight: int, route: models.RouteMatch | None, primary_replicas: int) -> int:
    """Canary pods for a weight: the primary's size scaled by the weight, at least 1 while it gets any traffic.

    The gateway splits requests exactly, whatever the pod counts; sizing the canary like
    the weight keeps the load per pod about equal on both arms.
    """
    if weight <= 0:
        return 1 if route is not None else 0
    return max(1, math.ceil(primary_replicas * weight / 100))


def canary_ready(arms: routing.Arms, wanted: int) -> bool:
    canary = arms.canary
    return (
        canary is not None
        and canary.replicas == wanted
        and canary.rolled_out
        and canary.ready_replicas >= wanted
        and canary.revision is not None
    )


def primary_ready(arms: routing.Arms) -> bool:
    return arms.primary is not None and arms.primary.rolled_out and arms.primary.ready_replicas > 0


async def scale_canary(api: kube.Client, arms: routing.Arms, replicas: int) -> None:
    if arms.canary is not None and arms.canary.replicas != replicas:
        path = kube.deployment_path(arms.namespace, names.canary(arms.target))
        await api.patch(path, {"spec": {"replicas": replicas}})


async def shift(
    api: kube.Client,
    arms: routing.Arms,
    wanted: int,
    *,
    started: bool,
    more: bool,
    route: Route,
    differs: Callable[[Route], bool],
    write: Callable[[Route], Awaitable[Route]],
) -> None:
    """One step towards ``wanted`` canary replicas and the route ``differs`` compares with, in the order of
    writes above. ``started``: the route already sends to the arms (else it waits for a ready primary);
    ``more``: the canary is to get more traffic than the route gives it; ``write`` writes the route and
    returns it as the API answered, which ``differs`` then reads back."""
    if not started and not primary_ready(arms):
        return  # the route keeps sending to the apex until the primary can take it all
    if arms.canary is not None and wanted > arms.canary.replicas:
        await scale_canary(api, arms, wanted)
        return  # more traffic only once the bigger canary is ready
    if differs(route) and (not more or wanted == 0 or canary_ready(arms, wanted)):
        route = await write(route)
    if arms.canary is not None and wanted < arms.canary.replicas and not differs(route):
        await scale_canary(api, arms, wanted)


def managed_by(obj: Mapping[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(MANAGER_ANNOTATION)


def original_spec(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The spec as it was before the operator changed it (None when it never did)."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(ORIGINAL_ANNOTATION)
    if raw is None:
        return None
    value = json.loads(raw)
    return value if isinstance(value, dict) else None


def check_owner(obj: Mapping[str, Any], rollout_name: str, kind: str) -> None:
    """RouterError when another controller or another CanaryRollout manages the object."""
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    manager = managed_by(obj)
    if manager is not None and manager != rollout_name:
        raise routing.RouterError(
            models.Reason.ROUTE_CONFLICT, f"{kind} {name} is managed by CanaryRollout {manager}; one rollout per route"
        )
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and not (ref.get("kind") == models.KIND and ref.get("name") == rollout_name):
            raise routing.RouterError(
                models.Reason.ROUTE_CONFLICT,
                f"{kind} {name} is controlled by {ref.get('kind')} {ref.get('name')}; the canary operator will not"
                " change a route another controller writes",
            )


def change_patch(obj: Mapping[str, Any], rollout_name: str, spec_changes: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch that changes top-level spec fields, recording the original on the first change.

    The resourceVersion makes it fail with 409 if the user changed the object since it was read.
    """
    meta = obj["metadata"]
    patch: dict[str, Any] = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "spec": dict(spec_changes)}
    if original_spec(obj) is None:
        patch["metadata"]["annotations"] = {
            MANAGER_ANNOTATION: rollout_name,
            ORIGINAL_ANNOTATION: json.dumps(obj.get("spec") or {}, sort_keys=True, separators=(",", ":")),
        }
    return patch


def restore_patch(obj: Mapping[str, Any], restored_spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A JSON patch giving the object back its spec and dropping the operator's annotations.

    A JSON patch, not a merge patch: when the operator's were the only annotations,
    the map goes too, so the object is as it was, key for key.
    """
    meta = obj["metadata"]
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")},
        {"op": "replace", "path": "/spec", "value": dict(restored_spec)},
    ]
    annotations = meta.get("annotations") or {}
    if set(annotations) <= {MANAGER_ANNOTATION, ORIGINAL_ANNOTATION}:
        ops.append({"op": "remove", "path": "/metadata/annotations"})
    else:
        for key in (MANAGER_ANNOTATION, ORIGINAL_ANNOTATION):
            if key in annotations:
                ops.append({"op": "remove", "path": "/metadata/annotations/" + key.replace("/", "~1")})
    return ops


def percent(canary: float, primary: float) -> int:
    total = canary + primary
    return 0 if total <= 0 else round(100 * canary / total)


def deep(value: Any) -> Any:
    return copy.deepcopy(value)


def route_name(route: models.RouteMatch) -> str:
    return ADDED_PREFIX + route.name


def added(item: Mapping[str, Any]) -> bool:
    """A rule or http route the operator added to the user's route (a header or cookie route)."""
    return str(item.get("name") or "").startswith(ADDED_PREFIX)


def users_items(obj: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    """Copies of the items of ``spec.<field>`` (HTTPRoute rules, VirtualService http routes) the user wrote:
    the ones the operator added are left out, to be written again or not at all."""
    return [deep(item) for item in (obj.get("spec") or {}).get(field) or [] if not added(item)]


def cookie_regex(route: models.CookieRoute) -> str:
    """A Cookie header holding ``name=value`` among others (RE2 syntax, as Envoy and Istio take it)."""
    return f"^(.*?;\\s*)?({re.escape(route.cookie_name or '')}={re.escape(route.value)})(;.*)?$"


class Reads:
    """A router's reads within its tick (a router is made for one tick): each object is read once, then as the API
    answered our own write of it. A write is guarded by the resourceVersion read, so a change by someone else in
    between fails it with 409 rather than being overwritten; the next tick reads afresh."""

    def __init__(self, api: kube.Client) -> None:
        self.api = api
        self._seen: dict[str, dict[str, Any] | None] = {}

    async def get(self, path: str) -> dict[str, Any] | None:
        if path not in self._seen:
            self._seen[path] = await self.api.get(path)
        return self._seen[path]

    def wrote(self, path: str, answer: dict[str, Any]) -> dict[str, Any]:
        self._seen[path] = answer
        return answer


class UserRouteRouter(abc.ABC):
    """A router that changes one of the user's route objects in place (HTTPRoute, VirtualService).

    Subclasses say where the object is, how to check it, and which top-level spec fields
    a weight and a header route make of it; the order of writes, the bookkeeping and the
    read-back are here.
    """

    kind: str  # the object's kind, for messages

    def __init__(self, api: kube.Client, rollout: Mapping[str, Any], target: str) -> None:
        self.api = api
        self.reads = Reads(api)
        self.rollout_name = str(rollout["metadata"]["name"])
        self.target = target

    @abc.abstractmethod
    def path(self, namespace: str) -> str: ...

    @abc.abstractmethod
    async def validate(self, obj: Mapping[str, Any], namespace: str) -> None:
        """RouterError when the object cannot be split as configured (no such rule, wrong backends)."""

    @abc.abstractmethod
    def routed(self, obj: Mapping[str, Any], weight: int, route: models.RouteMatch | None) -> dict[str, Any]:
        """The top-level spec fields that send ``weight`` percent and ``route``'s requests to the canary."""

    @abc.abstractmethod
    def weight_of(self, obj: Mapping[str, Any]) -> int:
        """The canary's share the object routes right now (0 when not routed by the operator)."""

    @abc.abstractmethod
    def restored(self, obj: Mapping[str, Any], original: Mapping[str, Any]) -> dict[str, Any]:
        """The spec with the operator's changes undone (the live spec, not a stale copy, where it can)."""

    async def load(self, namespace: str) -> dict[str, Any]:
        obj = await self.reads.get(self.path(namespace))
        if obj is None:
            raise routing.RouterError(
                models.Reason.ROUTE_NOT_FOUND, f"{self.kind} {self.path(namespace).rsplit('/', 1)[-1]} not found"
            )
        return obj

    async def reconcile(self, rollout: Mapping[str, Any]) -> None:
        namespace = rollout["metadata"]["namespace"]
        obj = await self.load(namespace)
        check_owner(obj, self.rollout_name, self.kind)
        await self.validate(obj, namespace)

    def _differs(self, obj: Mapping[str, Any], weight: int, route: models.RouteMatch | None) -> dict[str, Any]:
        spec = obj.get("spec") or {}
        wanted = self.routed(obj, weight, route)
        return {key: value for key, value in wanted.items() if spec.get(key) != value}

    async def set_weight(
        self, arms: routing.Arms, weight: int, primary_replicas: int, route: models.RouteMatch | None = None
    ) -> None:
        obj = await self.load(arms.namespace)

        async def write(obj: dict[str, Any]) -> dict[str, Any]:
            changes = self._differs(obj, weight, route)
            path = self.path(arms.namespace)
            return self.reads.wrote(path, await self.api.patch(path, change_patch(obj, self.rollout_name, changes)))

        await shift(
            self.api,
            arms,
            canary_size(weight, route, primary_replicas),
            started=original_spec(obj) is not None,
            more=weight > self.weight_of(obj) or route is not None,
            route=obj,
            differs=lambda obj: bool(self._differs(obj, weight, route)),
            write=write,
        )

    async def observe(
        self, arms: routing.Arms, weight: int, primary_replicas: int, route: models.RouteMatch | None = None
    ) -> routing.TrafficState:
        obj = await self.load(arms.namespace)
        wanted = canary_size(weight, route, primary_replicas)
        in_effect = self.weight_of(obj)
        settled = (
            not self._differs(obj, weight, route)
            and primary_ready(arms)
            and (canary_ready(arms, wanted) if wanted > 0 else arms.canary is None or arms.canary.replicas == 0)
        )
        if original_spec(obj) is None and weight == 0 and route is None:
            settled = primary_ready(arms) and (arms.canary is None or arms.canary.replicas == 0)
        return routing.TrafficState(weight=in_effect, settled=settled)

    async def finalize(self, rollout: Mapping[str, Any]) -> None:
        namespace = rollout["metadata"]["namespace"]
        obj = await self.api.get(self.path(namespace))
        if obj is None or managed_by(obj) != self.rollout_name:
            return
        original = original_spec(obj)
        if original is None:
            return
        await self.api.patch(self.path(namespace), restore_patch(obj, self.restored(obj, original)), kube.JSON_PATCH)
