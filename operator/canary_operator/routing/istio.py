"""The Istio router: weights on one HTTP route of the user's VirtualService (networking.istio.io/v1).

Two forms, as Istio users write them:
- host form: the route's destination host (the apex Service) becomes two destinations,
  ``<target>-primary`` and ``<target>-canary``, each a copy of the original (port kept);
- subset form (``destinationRule``): the host stays the apex Service and the two
  destinations name the DestinationRule's subsets; the subsets must select the arms by
  the ``canary.dev/arm`` label, which is checked, never written.

A header or cookie route is a copy of the managed route, named ``canary-dev-<name>``,
inserted just before it: Istio takes the first http route that matches, in order. A
cookie is matched the Istio way, as a regex on the ``cookie`` header. Other routes and
fields are left as they were; the ``http`` list is rewritten whole from the live object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from canary_operator import kube, models, names, routing, workloads
from canary_operator.routing import weighted

GROUP_VERSION = "networking.istio.io/v1"


def virtual_service_path(namespace: str, name: str) -> str:
    return kube.object_path(f"/apis/{GROUP_VERSION}", "virtualservices", namespace, name)


def destination_rule_path(namespace: str, name: str) -> str:
    return kube.object_path(f"/apis/{GROUP_VERSION}", "destinationrules", namespace, name)


def short_host(host: str) -> str:
    """``web`` for ``web``, ``web.shop``, ``web.shop.svc`` and ``web.shop.svc.cluster.local``."""
    return host.split(".", 1)[0]


def renamed_host(host: str, name: str) -> str:
    """The same host form (short or qualified) for another Service of the namespace."""
    rest = host.split(".", 1)[1:]
    return ".".join([name, *rest])


class IstioRouter(weighted.UserRouteRouter):
    kind = "VirtualService"

    def __init__(self, api: kube.Client, config: models.IstioRouting, rollout: Mapping[str, Any], target: str) -> None:
        super().__init__(api, rollout, target)
        self.config = config

    def path(self, namespace: str) -> str:
        return virtual_service_path(namespace, self.config.virtual_service)

    def _sends_to_target(self, route: Mapping[str, Any]) -> bool:
        sent_to = (self.target, names.primary(self.target))
        hosts = [str((d.get("destination") or {}).get("host", "")) for d in route.get("route") or []]
        return any(short_host(host) in sent_to for host in hosts)

    def _managed_index(self, routes: list[dict[str, Any]]) -> int:
        if self.config.route is not None:
            found = [i for i, r in enumerate(routes) if r.get("name") == self.config.route]
            what = f"an http route named {self.config.route!r}"
        else:
            found = [i for i, r in enumerate(routes) if not weighted.added(r) and self._sends_to_target(r)]
            what = f"an http route to host {self.target}"
        return weighted.the_one(
            found,
            f"VirtualService {self.config.virtual_service} has no {what}",
            f"VirtualService {self.config.virtual_service} has {len(found)} http routes to host {self.target};"
            " name one with trafficRouting.istio.route",
        )

    def _destination(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """The managed route's destination as the user wrote it (from the recorded original once changed)."""
        spec = weighted.original_spec(obj) or obj.get("spec") or {}
        routes = spec.get("http") or []
        targets = routes[self._managed_index(routes)].get("route") or []
        hosts = [str((d.get("destination") or {}).get("host", "")) for d in targets]
        if len(targets) != 1 or short_host(hosts[0]) != self.target:
            raise routing.RouterError(
                models.Reason.ROUTE_BACKENDS_WRONG,
                f"VirtualService {self.config.virtual_service}: the route to split must have one destination,"
                f" host {self.target} (found {', '.join(hosts) or 'none'})",
            )
        destination = dict(weighted.deep(targets[0]["destination"]))
        destination.pop("subset", None)
        return destination

    async def validate(self, obj: Mapping[str, Any], namespace: str) -> None:
        spec = obj.get("spec") or {}
        if weighted.original_spec(obj) is None and any(weighted.added(r) for r in spec.get("http") or []):
            raise routing.RouterError(
                models.Reason.ROUTE_CONFLICT,
                f"VirtualService {self.config.virtual_service} has routes named {weighted.ADDED_PREFIX}*,"
                " the operator's own",
            )
        self._destination(obj)
        rule = self.config.destination_rule
        if rule is None:
            return
        found = await self.reads.get(destination_rule_path(namespace, rule.name))
        if found is None:
            raise routing.RouterError(
                models.Reason.DESTINATION_RULE_NOT_FOUND, f"DestinationRule {rule.name} not found"
            )
        if short_host(str((found.get("spec") or {}).get("host", ""))) != self.target:
            raise routing.RouterError(
                models.Reason.WRONG_SUBSETS,
                f"DestinationRule {rule.name} is for host {found['spec'].get('host')}, not {self.target}",
            )
        subsets = {s.get("name"): s.get("labels") or {} for s in (found.get("spec") or {}).get("subsets") or []}
        for subset, arm in ((rule.primary_subset, "primary"), (rule.canary_subset, "canary")):
            if (subsets.get(subset) or {}).get(workloads.ARM_LABEL) != arm:
                raise routing.RouterError(
                    models.Reason.WRONG_SUBSETS,
                    f"DestinationRule {rule.name} needs a subset {subset} with label {workloads.ARM_LABEL}: {arm}",
                )

    def _arm(self, base: Mapping[str, Any], arm: str) -> dict[str, Any]:
        rule = self.config.destination_rule
        if rule is None:
            host = str(base["host"])
            name = names.primary(self.target) if arm == "primary" else names.canary(self.target)
            return {**base, "host": renamed_host(host, name)}
        return {**base, "subset": rule.primary_subset if arm == "primary" else rule.canary_subset}

    def routed(self, obj: Mapping[str, Any], weight: int, route: models.RouteMatch | None) -> dict[str, Any]:
        base = self._destination(obj)
        routes = weighted.users_items(obj, "http")
        index = self._managed_index(routes)
        managed = routes[index]
        managed["route"] = [
            {"destination": self._arm(base, "primary"), "weight": 100 - weight},
            {"destination": self._arm(base, "canary"), "weight": weight},
        ]
        if route is not None:
            if isinstance(route, models.HeaderRoute):
                headers = {m.header_name.lower(): {m.header_value.kind: m.header_value.value} for m in route.match}
            else:
                headers = {"cookie": {"regex": weighted.cookie_regex(route)}}
            copy = weighted.deep(managed)
            copy["name"] = weighted.route_name(route)
            copy["match"] = [
                {**match, "headers": {**(match.get("headers") or {}), **headers}}
                for match in managed.get("match") or [{}]
            ]
            copy["route"] = [{"destination": self._arm(base, "canary")}]
            routes.insert(index, copy)
        return {"http": routes}

    def _is_canary(self, destination: Mapping[str, Any]) -> bool:
        rule = self.config.destination_rule
        if rule is not None:
            return bool(destination.get("subset") == rule.canary_subset)
        return short_host(str(destination.get("host", ""))) == names.canary(self.target)

    def weight_of(self, obj: Mapping[str, Any]) -> int:
        routes = weighted.users_items(obj, "http")
        targets = routes[self._managed_index(routes)].get("route") or []
        canary = primary = 0.0
        for item in targets:
            # Istio's default: a lone destination gets 100, several without weights get nothing declared.
            share = float(item.get("weight", 100 if len(targets) == 1 else 0))
            if self._is_canary(item.get("destination") or {}):
                canary += share
            else:
                primary += share
        return weighted.percent(canary, primary)

    def restored(self, obj: Mapping[str, Any], original: Mapping[str, Any]) -> dict[str, Any]:
        routes = weighted.users_items(obj, "http")
        original_routes = original.get("http") or []
        routes[self._managed_index(routes)]["route"] = weighted.deep(
            original_routes[self._managed_index(original_routes)].get("route")
        )
        return {**weighted.deep(obj.get("spec") or {}), "http": routes}
