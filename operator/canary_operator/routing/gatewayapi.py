"""The Gateway API router: weights on the backendRefs of one rule of the user's HTTPRoute.

The managed rule is the one the spec names, or else the one rule whose backendRefs send
to the apex Service. Its single backendRef becomes two, ``<target>-primary`` and
``<target>-canary``, each a copy of the original ref (port, filters) with a weight. A
header route is a copy of the rule, named ``canary-dev-<name>``, whose matches also
require the headers and which sends to the canary alone: Gateway API prefers the match
with more header matches, so the copy wins for those requests wherever it stands.
Everything else in the route is left as it was; the rule list is rewritten whole
(a merge patch replaces lists), from the live object, so other rules keep every byte.

Cookies: HTTPRoute has no cookie match (a regex on the Cookie header is an
implementation-specific extension), so this router refuses setCookieRoute at admission.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from canary_operator import kube, models, names, routing
from canary_operator.routing import weighted

GROUP_VERSION = "gateway.networking.k8s.io/v1"
_MATCH_TYPES = {"exact": "Exact", "regex": "RegularExpression"}


def route_path(namespace: str, name: str) -> str:
    return kube.object_path(f"/apis/{GROUP_VERSION}", "httproutes", namespace, name)


def _is_service(ref: Mapping[str, Any], name: str) -> bool:
    return ref.get("name") == name and ref.get("kind", "Service") == "Service" and ref.get("group", "") == ""


class GatewayAPIRouter(weighted.UserRouteRouter):
    kind = "HTTPRoute"

    def __init__(
        self, api: kube.Client, config: models.GatewayAPIRouting, rollout: Mapping[str, Any], target: str
    ) -> None:
        super().__init__(api, rollout, target)
        self.config = config

    def path(self, namespace: str) -> str:
        return route_path(namespace, self.config.http_route)

    def _managed_index(self, rules: list[dict[str, Any]]) -> int:
        """The rule to split, among the user's rules (not the ones the operator added)."""
        sent_to = (self.target, names.primary(self.target))
        if self.config.rule is not None:
            found = [i for i, rule in enumerate(rules) if rule.get("name") == self.config.rule]
            what = f"a rule named {self.config.rule!r}"
        else:
            found = [
                i
                for i, rule in enumerate(rules)
                if not weighted.added(rule)
                and any(_is_service(ref, n) for ref in rule.get("backendRefs") or [] for n in sent_to)
            ]
            what = f"a rule sending to Service {self.target}"
        return weighted.the_one(
            found,
            f"HTTPRoute {self.config.http_route} has no {what}",
            f"HTTPRoute {self.config.http_route} has {len(found)} rules sending to Service {self.target};"
            " name one with trafficRouting.gatewayAPI.rule",
        )

    def _apex_ref(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """The managed rule's backendRef as the user wrote it (from the recorded original once changed)."""
        spec = weighted.original_spec(obj) or obj.get("spec") or {}
        rules = spec.get("rules") or []
        refs = rules[self._managed_index(rules)].get("backendRefs") or []
        apex = [ref for ref in refs if _is_service(ref, self.target)]
        others = [ref.get("name") for ref in refs if not _is_service(ref, self.target)]
        if not apex or others:
            raise routing.RouterError(
                models.Reason.ROUTE_BACKENDS_WRONG,
                f"HTTPRoute {self.config.http_route}: the rule to split must send to Service {self.target} only"
                f" (found {', '.join(str(n) for n in [r.get('name') for r in refs]) or 'no backendRefs'});"
                f" the operator splits it between {names.primary(self.target)} and"
                f" {names.canary(self.target)}",
            )
        ref = weighted.deep(apex[0])
        ref.pop("weight", None)
        return dict(ref)

    async def validate(self, obj: Mapping[str, Any], namespace: str) -> None:
        spec = obj.get("spec") or {}
        original = weighted.original_spec(obj)
        if original is None and any(weighted.added(rule) for rule in spec.get("rules") or []):
            raise routing.RouterError(
                models.Reason.ROUTE_CONFLICT,
                f"HTTPRoute {self.config.http_route} has rules named {weighted.ADDED_PREFIX}*, the operator's own",
            )
        self._apex_ref(obj)

    def routed(self, obj: Mapping[str, Any], weight: int, route: models.RouteMatch | None) -> dict[str, Any]:
        apex = self._apex_ref(obj)
        rules = weighted.users_items(obj, "rules")
        index = self._managed_index(rules)
        managed = rules[index]
        managed["backendRefs"] = [
            {**apex, "name": names.primary(self.target), "weight": 100 - weight},
            {**apex, "name": names.canary(self.target), "weight": weight},
        ]
        if isinstance(route, models.HeaderRoute):
            headers = [
                {"type": _MATCH_TYPES[m.header_value.kind], "name": m.header_name, "value": m.header_value.value}
                for m in route.match
            ]
            copy = weighted.deep(managed)
            copy["name"] = weighted.route_name(route)
            copy["matches"] = [
                {**match, "headers": [*(match.get("headers") or []), *headers]}
                for match in (managed.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}])
            ]
            # weight: the API server defaults it to 1; written out so that the read-back compares equal.
            copy["backendRefs"] = [{**apex, "name": names.canary(self.target), "weight": 1}]
            rules.insert(index, copy)
        return {"rules": rules}

    def weight_of(self, obj: Mapping[str, Any]) -> int:
        rules = weighted.users_items(obj, "rules")
        refs = rules[self._managed_index(rules)].get("backendRefs") or []
        weights = {ref.get("name"): float(ref.get("weight", 1)) for ref in refs}
        canary = weights.get(names.canary(self.target), 0.0)
        return weighted.percent(canary, sum(weights.values()) - canary)

    def restored(self, obj: Mapping[str, Any], original: Mapping[str, Any]) -> dict[str, Any]:
        rules = weighted.users_items(obj, "rules")
        original_rules = original.get("rules") or []
        rules[self._managed_index(rules)]["backendRefs"] = weighted.deep(
            original_rules[self._managed_index(original_rules)].get("backendRefs")
        )
        return {**weighted.deep(obj.get("spec") or {}), "rules": rules}
