"""The traffic simulator reads the split from the route objects the way the data plane would: exact weights
whatever the replica counts, header and cookie routes first, Services spread over their ready pods."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from router_beds import KINDS, NS, Bed

from canary_bench import dataplane, traffic
from canary_operator import models

BETA = dataplane.RequestClass(share=0.2, headers={"X-Canary": "yes"})
OTHERS = dataplane.RequestClass(share=0.8)
HEADER = models.HeaderRoute(
    name="beta", match=[models.HeaderMatch(header_name="X-Canary", header_value=models.StringMatch(exact="yes"))]
)
ROUTE_NAMES = {"gatewayAPI": "web", "istio": "web", "istio-subsets": "web", "nginx": "web"}


def source(bed: Bed, *classes: dataplane.RequestClass) -> traffic.RouteTrafficSource:
    router = "istio" if bed.kind.name.startswith("istio") else bed.kind.name
    return traffic.RouteTrafficSource(
        bed.cluster.url, namespace=NS, router=router, route=ROUTE_NAMES[bed.kind.name], classes=classes or (OTHERS,)
    )


def canary_share(arms: list[traffic.Arm]) -> float:
    return sum(arm.share for arm in arms if arm.workload == "web-canary") / sum(arm.share for arm in arms)


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_ten_percent_is_ten_percent_with_four_primary_pods_and_one_canary_pod(
    make_bed: Callable[[str], Bed], kind: str
) -> None:
    bed = make_bed(kind)
    await bed.settle(10)
    assert bed.cluster.deployment(NS, "web-canary")["status"]["readyReplicas"] == 1  # type: ignore[index]

    arms = source(bed)()

    assert canary_share(arms) == pytest.approx(0.10)
    primary = [arm for arm in arms if arm.workload == "web-primary"]
    assert len(primary) == 1 and primary[0].share == pytest.approx(0.8 * 0.9)


@pytest.mark.parametrize("kind", ["gatewayAPI", "istio", "istio-subsets", "nginx"])
async def test_requests_with_the_header_all_go_to_the_canary_the_rest_by_weight(
    make_bed: Callable[[str], Bed], kind: str
) -> None:
    bed = make_bed(kind)
    await bed.settle(10, HEADER)

    arms = source(bed, BETA, OTHERS)()

    assert canary_share(arms) == pytest.approx(0.2 + 0.8 * 0.10)


async def test_a_header_route_alone_sends_only_chosen_users_to_the_canary(make_bed: Callable[[str], Bed]) -> None:
    bed = make_bed("gatewayAPI")
    await bed.settle(0, HEADER)

    assert canary_share(source(bed, BETA, OTHERS)()) == pytest.approx(0.2)
    assert canary_share(source(bed, OTHERS)()) == 0


async def test_nginx_cookie_always_goes_to_the_canary_and_never_stays_off_it(make_bed: Callable[[str], Bed]) -> None:
    bed = make_bed("nginx")
    await bed.settle(50, models.CookieRoute(cookie_name="canary"))

    always = dataplane.RequestClass(share=0.5, cookies={"canary": "always"})
    never = dataplane.RequestClass(share=0.5, cookies={"canary": "never"})
    assert canary_share(source(bed, always)()) == 1
    assert canary_share(source(bed, never)()) == 0


async def test_before_adoption_the_apex_spreads_over_the_primarys_ready_pods(make_bed: Callable[[str], Bed]) -> None:
    bed = make_bed("gatewayAPI")  # the route still names Service web, as the user wrote it

    arms = source(bed)()

    assert [arm.workload for arm in arms] == ["web-primary"] and arms[0].share == pytest.approx(0.8)
    assert arms[0].service == "web"


def test_gateway_api_prefers_the_more_specific_match_wherever_it_stands() -> None:
    route = {
        "metadata": {"name": "web"},
        "spec": {
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [{"name": "a"}]},
                {
                    "matches": [
                        {"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"name": "x", "value": "1"}]}
                    ],
                    "backendRefs": [{"name": "b"}],
                },
                {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": [{"name": "c"}]},
            ]
        },
    }
    assert dataplane.http_route_shares(route, dataplane.RequestClass(headers={"X": "1"})) == {("b", None): 1.0}
    assert dataplane.http_route_shares(route, dataplane.RequestClass(path="/api/v1", headers={"x": "1"})) == {
        ("c", None): 1.0
    }
    assert dataplane.http_route_shares(route, dataplane.RequestClass(path="/apiary")) == {("a", None): 1.0}


def test_istio_takes_the_first_matching_route_in_order() -> None:
    service = {
        "metadata": {"name": "web"},
        "spec": {
            "http": [
                {"match": [{"uri": {"prefix": "/"}}], "route": [{"destination": {"host": "a"}}]},
                {
                    "match": [{"headers": {"x": {"exact": "1"}}}],
                    "route": [{"destination": {"host": "b"}}],
                },
            ]
        },
    }
    assert dataplane.virtual_service_shares(service, dataplane.RequestClass(headers={"x": "1"})) == {("a", None): 1.0}


def test_the_exporter_serves_the_data_planes_series() -> None:
    for plane, family in (
        ("istio", "istio_requests_total"),
        ("nginx", 'nginx_ingress_controller_requests{canary="web-canary",ingress="web",namespace="shop"'),
        ("envoy", 'envoy_cluster_upstream_rq{envoy_cluster_name="shop_web-canary_80",envoy_response_code="500"} 1.0'),
    ):
        exporter = traffic.Exporter(data_plane=plane)
        exporter.record(NS, "web-canary-abc-sim", "500", 0.2, workload="web-canary", service="web-canary")
        assert family in exporter.text()
