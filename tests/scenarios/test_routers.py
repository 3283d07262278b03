"""Closed-loop scenarios through each traffic router: the real operator process, real Prometheus, the
emulated cluster holding the user's HTTPRoute, VirtualService or Ingress, and traffic that follows the split
the way the data plane would. The weights users get are exact (10% is 10% with four primary pods and one
canary pod); a bad canary is rolled back to 0% through the route; deleting the rollout gives the route back."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from canary_bench import dataplane
from canary_bench import stage as stages

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prometheus_tools")]

BETA = dataplane.RequestClass(share=0.2, headers={"X-Canary": "yes"})
OTHERS = dataplane.RequestClass(share=0.8)
HEADER_STEP = {
    "setHeaderRoute": {"name": "beta", "match": [{"headerName": "X-Canary", "headerValue": {"exact": "yes"}}]}
}
STEPS = [{"setWeight": 10}, {"setWeight": 50}]  # each step holds until a check at its weight passes
# Istio also runs on its own series (metrics: dataPlane) and starts with chosen users only.
PLANS = {
    "gatewayAPI": stages.Plan(router="gatewayAPI", steps=copy.deepcopy(STEPS)),
    "istio": stages.Plan(router="istio", metrics="dataPlane", steps=[HEADER_STEP, *copy.deepcopy(STEPS)]),
    "nginx": stages.Plan(router="nginx", steps=copy.deepcopy(STEPS)),
}
ROUTES = {
    "gatewayAPI": "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web",
    "istio": "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/web",
    "nginx": "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web",
}


@pytest.fixture(params=sorted(PLANS))
def stage(request: pytest.FixtureRequest) -> Iterator[stages.Stage]:
    # 600 req/s: 10% gives the canary 120 requests per 2 s check, above the 100 a p99 needs.
    with stages.Stage(plan=PLANS[request.param], request_classes=(BETA, OTHERS), rate=600) as started:
        started.wait_phase("Stable", timeout=30)
        started.wait_traffic()
        yield started


def canary_share(stage: stages.Stage) -> float:
    assert stage.load is not None
    arms = stage.load.arms
    return sum(a.share for a in arms if a.workload == "web-canary") / sum(a.share for a in arms)


def user_route(stage: stages.Stage) -> dict[str, Any]:
    assert stage.cluster is not None
    found = stage.cluster.get(ROUTES[stage.plan.router])
    assert found is not None
    return found


def test_a_healthy_canary_gets_exact_weights_and_is_promoted_a_bad_one_is_rolled_back_and_the_route_given_back(
    stage: stages.Stage,
) -> None:
    """One stage per router (a stage takes about 10 s to start): the user's whole story with it."""
    # Taken over at initialization: the route as the user had it is the one recorded then (an Ingress is
    # never written: the canary Ingress is the operator's own).
    route = user_route(stage)
    recorded = (route["metadata"].get("annotations") or {}).get("canary.dev/original-spec")
    original = json.loads(recorded) if recorded else copy.deepcopy(route["spec"])

    stage.set_image("example/web:2.0")
    if stage.plan.router == "istio":
        stage.wait_status(
            "the header step settled",
            lambda s: bool(s.get("weightSettledAt")) and s.get("currentStepIndex") == 0,
        )
        stage.wait_for("the header route in the data plane", lambda: abs(canary_share(stage) - 0.2) < 1e-9)
    stage.wait_status("10% settled", lambda s: s.get("weight") == 10 and bool(s.get("weightSettledAt")))
    # Exactly the weight (plus the header's users for Istio), with 4 primary pods and 1 canary pod.
    expected = 0.2 + 0.8 * 0.1 if stage.plan.router == "istio" else 0.1
    stage.wait_for("10% in the data plane", lambda: abs(canary_share(stage) - expected) < 1e-9)
    assert stage.deployment("web-canary")["spec"]["replicas"] == 1  # type: ignore[index]

    status = stage.wait_phase("Succeeded", timeout=90)
    assert status["lastCheck"]["verdict"] == "Pass"
    stage.wait_for("the canary out of the route", lambda: canary_share(stage) == 0)
    stage.wait_for("the canary scaled to 0", lambda: (stage.deployment("web-canary") or {})["spec"]["replicas"] == 0)

    status = stage.release("example/web:2.0-errors", timeout=90)
    assert status["phase"] == "RolledBack" and "error-rate" in status["message"]
    stage.wait_for("no request to the canary", lambda: canary_share(stage) == 0)
    stage.wait_status("0% reported", lambda s: s.get("weight") == 0)
    assert [e["reason"] for e in stage.events()].count("RolledBack") == 1

    stage.delete_rollout()
    stage.wait_for("the rollout gone", lambda: stage.rollout() is None, timeout=60)
    assert user_route(stage)["spec"] == original, "the user's route as it was"
    assert not {"canary.dev/original-spec", "canary.dev/managed-by"} & set(user_route(stage)["metadata"]["annotations"])
    assert stage.cluster is not None and stage.cluster.get(ROUTES["nginx"] + "-canary") is None
