"""Each router's own shapes: what else of the user's route stays as it was, how header and cookie routes are
written in each data plane's terms, and the specific errors when the route cannot be split."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import kopf
import pytest
from router_beds import NS, PRIMARY_REPLICAS, Bed, comparable

from canary_operator import kube, models, routing
from canary_operator.routing import nginx

BETA_HEADER = models.HeaderRoute(
    name="beta",
    match=[models.HeaderMatch(header_name="X-Canary", header_value=models.StringMatch(exact="yes"))],
)
BETA_COOKIE = models.CookieRoute(name="beta", cookie_name="canary")


async def test_gateway_api_changes_only_the_backend_refs_of_the_managed_rule(make_bed: Callable[[str], Bed]) -> None:
    bed = make_bed("gatewayAPI")
    before = comparable(bed.cluster.get(bed.kind.user_path))

    await bed.settle(30)

    after = comparable(bed.route())
    for key in ("parentRefs", "hostnames"):
        assert after["spec"][key] == before["spec"][key]
    assert after["spec"]["rules"][0] == before["spec"]["rules"][0], "the other rule, byte for byte"
    managed_before = {k: v for k, v in before["spec"]["rules"][1].items() if k != "backendRefs"}
    managed_after = {k: v for k, v in after["spec"]["rules"][1].items() if k != "backendRefs"}
    assert managed_after == managed_before, "the managed rule's matches, filters and timeouts"
    assert after["spec"]["rules"][1]["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "web-primary", "port": 80, "weight": 70},
        {"group": "", "kind": "Service", "name": "web-canary", "port": 80, "weight": 30},
    ]
    assert after["metadata"]["labels"] == before["metadata"]["labels"]


async def test_gateway_api_header_route_is_a_more_specific_copy_of_the_rule_sending_to_the_canary(
    make_bed: Callable[[str], Bed],
) -> None:
    bed = make_bed("gatewayAPI")
    await bed.settle(0, BETA_HEADER)

    rules = bed.route()["spec"]["rules"]  # type: ignore[index]
    assert [r.get("name") for r in rules] == [None, "canary-dev-beta", "app"]
    assert rules[1]["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/"},
            "headers": [{"type": "Exact", "name": "X-Canary", "value": "yes"}],
        }
    ]
    assert rules[1]["backendRefs"] == [{"group": "", "kind": "Service", "name": "web-canary", "port": 80, "weight": 1}]
    assert rules[1]["filters"] == rules[2]["filters"], "header traffic gets the rule's filters too"
    assert bed.canary_share() == 0, "the weighted split is untouched"

    await bed.settle(20)  # the next step clears the route (route_in_force gives None) and sets a weight
    assert [r.get("name") for r in bed.route()["spec"]["rules"]] == [None, "app"]  # type: ignore[index]


async def test_istio_header_and_cookie_routes_come_first_among_the_http_routes(
    make_bed: Callable[[str], Bed],
) -> None:
    bed = make_bed("istio")
    await bed.settle(10, BETA_HEADER)

    http = bed.route()["spec"]["http"]  # type: ignore[index]
    assert [r["name"] for r in http] == ["static", "canary-dev-beta", "app"]
    assert http[1]["match"] == [{"uri": {"prefix": "/"}, "headers": {"x-canary": {"exact": "yes"}}}]
    assert http[1]["route"] == [{"destination": {"host": "web-canary.shop.svc.cluster.local", "port": {"number": 80}}}]
    assert http[1]["retries"] == http[2]["retries"]
    assert bed.canary_share() == 10

    await bed.settle(10, BETA_COOKIE)
    http = bed.route()["spec"]["http"]  # type: ignore[index]
    assert [r["name"] for r in http] == ["static", "canary-dev-beta", "app"]
    assert http[1]["match"][0]["headers"] == {"cookie": {"regex": r"^(.*?;\s*)?(canary=always)(;.*)?$"}}


async def test_istio_subset_form_keeps_the_host_and_names_the_subsets(make_bed: Callable[[str], Bed]) -> None:
    bed = make_bed("istio-subsets")
    await bed.settle(25)

    route = next(r for r in bed.route()["spec"]["http"] if r["name"] == "app")  # type: ignore[index]
    assert route["route"] == [
        {"destination": {"host": "web", "port": {"number": 80}, "subset": "stable"}, "weight": 75},
        {"destination": {"host": "web", "port": {"number": 80}, "subset": "preview"}, "weight": 25},
    ]


async def test_nginx_canary_ingress_carries_weight_header_and_cookie_annotations(
    make_bed: Callable[[str], Bed],
) -> None:
    bed = make_bed("nginx")
    user = comparable(bed.cluster.get(bed.kind.user_path))
    await bed.router.reconcile(bed.rollout)
    await bed.settle(15, BETA_HEADER)

    canary = bed.route()
    assert canary is not None
    assert {k: v for k, v in canary["metadata"]["annotations"].items()} == {
        nginx.CANARY: "true",
        nginx.WEIGHT: "15",
        nginx.WEIGHT_TOTAL: "100",
        nginx.BY_HEADER: "X-Canary",
        nginx.BY_HEADER_VALUE: "yes",
    }
    assert canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "web-canary"
    assert canary["spec"]["ingressClassName"] == "nginx" and "tls" not in canary["spec"]
    assert canary["metadata"]["ownerReferences"][0]["uid"] == bed.rollout["metadata"]["uid"]

    await bed.settle(15, BETA_COOKIE)
    annotations = bed.route()["metadata"]["annotations"]  # type: ignore[index]
    assert annotations[nginx.BY_COOKIE] == "canary" and nginx.BY_HEADER not in annotations
    assert comparable(bed.cluster.get(bed.kind.user_path)) == user, "the user's Ingress is only read"
    apex = bed.cluster.service(NS, "web")
    assert apex is not None and apex["spec"]["selector"]["canary.dev/arm"] == "primary"


# ---------------------------------------------------------------- failing loudly


async def reason_of(bed: Bed) -> str:
    with pytest.raises(routing.RouterError) as caught:
        await bed.router.reconcile(bed.rollout)
    return f"{caught.value.reason}: {caught.value}"


@pytest.mark.parametrize("kind", ["gatewayAPI", "istio", "nginx"])
async def test_a_missing_route_is_named(make_bed: Callable[[str], Bed], kind: str) -> None:
    bed = make_bed(kind)
    bed.cluster.delete(bed.kind.user_path)

    assert (await reason_of(bed)).startswith("RouteNotFound:")
    with pytest.raises(routing.RouterError):
        await bed.router.set_weight(bed.arms(), 10, PRIMARY_REPLICAS)


async def test_a_rule_sending_elsewhere_too_is_refused(make_bed: Callable[[str], Bed]) -> None:
    bed = make_bed("gatewayAPI")
    route = copy.deepcopy(bed.cluster.get(bed.kind.user_path))
    assert route is not None
    route["spec"]["rules"][1]["backendRefs"].append({"name": "web-legacy", "port": 80})
    bed.cluster.replace(bed.kind.user_path, route)

    reason = await reason_of(bed)
    assert reason.startswith("RouteBackendsWrong:") and "web-legacy" in reason


async def test_two_rules_to_the_apex_need_a_rule_name(make_bed: Callable[[str], Bed]) -> None:
    bed = make_bed("gatewayAPI")
    route = copy.deepcopy(bed.cluster.get(bed.kind.user_path))
    assert route is not None
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "web", "port": 80}]
    bed.cluster.replace(bed.kind.user_path, route)

    assert (await reason_of(bed)).startswith("RouteRuleAmbiguous:")


async def test_a_route_another_rollout_manages_is_not_touched(make_bed: Callable[[str], Bed]) -> None:
    bed = make_bed("istio")
    bed.cluster.patch(bed.kind.user_path, {"metadata": {"annotations": {"canary.dev/managed-by": "api"}}})
    before = bed.cluster.get(bed.kind.user_path)

    assert "managed by CanaryRollout api" in await reason_of(bed)
    assert bed.cluster.get(bed.kind.user_path) == before


async def test_a_route_another_controller_owns_is_not_touched(make_bed: Callable[[str], Bed]) -> None:
    bed = make_bed("gatewayAPI")
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "flagger-owned", "uid": "u-1", "controller": True}
    bed.cluster.create("/api/v1/namespaces/shop/configmaps", {"metadata": {"name": "flagger-owned"}})
    owner["uid"] = bed.cluster.get("/api/v1/namespaces/shop/configmaps/flagger-owned")["metadata"]["uid"]  # type: ignore[index]
    bed.cluster.patch(bed.kind.user_path, {"metadata": {"ownerReferences": [owner]}})

    assert (await reason_of(bed)).startswith("RouteConflict:")


async def test_subsets_that_do_not_select_the_arms_are_refused(make_bed: Callable[[str], Bed]) -> None:
    bed = make_bed("istio-subsets")
    path = "/apis/networking.istio.io/v1/namespaces/shop/destinationrules/web"
    bed.cluster.patch(path, {"spec": {"subsets": [{"name": "stable", "labels": {"version": "v1"}}]}})

    reason = await reason_of(bed)
    assert reason.startswith("WrongSubsets:") and "stable" in reason


async def test_an_nginx_canary_ingress_of_someone_else_is_refused(make_bed: Callable[[str], Bed]) -> None:
    bed = make_bed("nginx")
    bed.cluster.create(
        nginx.ingress_path(NS), {"metadata": {"name": "web-canary"}, "spec": {"ingressClassName": "nginx"}}
    )

    assert (await reason_of(bed)).startswith("RouteConflict:")


async def test_an_ingress_to_another_service_is_refused(make_bed: Callable[[str], Bed]) -> None:
    bed = make_bed("nginx")
    ingress = copy.deepcopy(bed.cluster.get(bed.kind.user_path))
    assert ingress is not None
    ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "web-primary"
    bed.cluster.replace(bed.kind.user_path, ingress)

    assert "must send to Service web only (found web-primary)" in await reason_of(bed)


@pytest.mark.parametrize("kind", ["gatewayAPI", "istio"])
async def test_a_route_edited_while_the_weight_is_written_gets_a_409_and_the_next_try_keeps_the_edit(
    make_bed: Callable[[str], Bed], kind: str
) -> None:
    """The user (or GitOps) edits the route between the router's read and its write: the write is refused (the
    resourceVersion it read is stale), nothing is lost, and the next tick writes the weight over the edit."""
    bed = make_bed(kind)
    await bed.settle(0)
    path = bed.kind.user_path

    class EditingClient(kube.Client):
        async def patch(self, where: str, patch: Any, content_type: str = kube.MERGE) -> dict[str, Any]:
            if where == path:
                bed.cluster.patch(path, {"metadata": {"labels": {"edited": "by-user"}}})
            return await super().patch(where, patch, content_type)

    async with EditingClient(kopf.ConnectionInfo(server=bed.cluster.url)) as racing:
        router = bed.fresh_router(racing)
        await router.set_weight(bed.arms(), 20, PRIMARY_REPLICAS)  # scales the canary up first
        bed.wait_ready("web-canary")
        with pytest.raises(kube.ConflictError):
            await router.set_weight(bed.arms(), 20, PRIMARY_REPLICAS)
    assert bed.canary_share() == 0

    state = await bed.settle(20)

    assert state.weight == 20 and bed.canary_share() == 20
    assert bed.route()["metadata"]["labels"]["edited"] == "by-user"  # type: ignore[index]
