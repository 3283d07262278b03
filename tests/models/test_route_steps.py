"""Header and cookie steps are checked against the router when the spec is read: a router that cannot run a
step says so at once (InvalidSpec), never when the rollout reaches it."""

from __future__ import annotations

import copy
from typing import Any

import pydantic
import pytest
from helpers import example_rollout

from canary_operator import models

HEADER = {"setHeaderRoute": {"name": "beta", "match": [{"headerName": "X-Canary", "headerValue": {"exact": "yes"}}]}}
COOKIE = {"setCookieRoute": {"name": "beta", "cookieName": "canary"}}
ROUTERS = {
    "replicas": {"replicas": {}},
    "gatewayAPI": {"gatewayAPI": {"httpRoute": "web"}},
    "istio": {"istio": {"virtualService": "web"}},
    "nginx": {"nginx": {"ingress": "web"}},
}


def spec(router: str, *steps: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = copy.deepcopy(example_rollout()["spec"])
    raw["trafficRouting"] = ROUTERS[router]
    raw["steps"] = [*steps, {"setWeight": 20}]
    return raw


def problem(raw: dict[str, Any]) -> str:
    with pytest.raises(pydantic.ValidationError) as caught:
        models.parse_spec(raw)
    return models.explain(caught.value)


@pytest.mark.parametrize(
    ("router", "step", "expected"),
    [
        ("replicas", HEADER, "spec: steps[0].setHeaderRoute: the replicas router cannot route by header"),
        ("replicas", COOKIE, "spec: steps[0].setCookieRoute: the replicas router cannot route by cookie"),
        ("gatewayAPI", COOKIE, "spec: steps[0].setCookieRoute: the gatewayAPI router cannot route by cookie"),
        (
            "gatewayAPI",
            {"setHeaderRoute": {"match": [{"headerName": "X-Canary", "headerValue": {"prefix": "be"}}]}},
            "the gatewayAPI router cannot match a header by prefix (it can: exact, regex)",
        ),
        (
            "nginx",
            {
                "setHeaderRoute": {
                    "match": [
                        {"headerName": "X-A", "headerValue": {"exact": "1"}},
                        {"headerName": "X-B", "headerValue": {"exact": "2"}},
                    ]
                }
            },
            "the nginx router matches at most 1 header(s), got 2",
        ),
        (
            "nginx",
            {"setCookieRoute": {"cookieName": "canary", "value": "beta"}},
            "only when its value is \"always\", got 'beta'",
        ),
    ],
)
def test_a_router_that_cannot_run_a_route_step_refuses_the_spec(
    router: str, step: dict[str, Any], expected: str
) -> None:
    assert expected in problem(spec(router, step))


@pytest.mark.parametrize(
    ("router", "steps"),
    [("istio", (HEADER, COOKIE)), ("gatewayAPI", (HEADER,)), ("nginx", (HEADER, COOKIE))],
)
def test_routers_that_can_accept_their_route_steps(router: str, steps: tuple[dict[str, Any], ...]) -> None:
    parsed = models.parse_spec(spec(router, *steps))
    assert models.step_route(parsed.steps, 0) is not None


def test_an_empty_route_step_clears_the_route_from_then_on() -> None:
    parsed = models.parse_spec(spec("istio", HEADER, {"setWeight": 10}, {"setHeaderRoute": {}}))
    assert [models.step_route(parsed.steps, i) for i in range(4)] == [
        parsed.steps[0].set_header_route,
        parsed.steps[0].set_header_route,
        None,
        None,
    ]


def test_a_step_is_one_thing() -> None:
    assert "exactly one of setWeight, pause, setHeaderRoute, setCookieRoute" in problem(
        spec("istio", {"setWeight": 10, **HEADER})
    )


def test_a_header_value_matches_one_way() -> None:
    step = {"setHeaderRoute": {"match": [{"headerName": "X-A", "headerValue": {"exact": "1", "regex": "1"}}]}}
    assert "exactly one of exact, prefix, regex" in problem(spec("istio", step))
