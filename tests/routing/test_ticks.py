"""The routers inside the operator's tick (reconciling.tick, in process, against the emulator): a route that
cannot be split stalls the rollout with a specific condition and one Warning Event; a tick killed between
the router's write and the status write converges on the next tick."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

import kopf
import pytest
from helpers import deployment
from router_beds import KINDS, NS, ROLLOUTS, rollout_manifest

from canary_bench import cluster as clusters
from canary_operator import kube, reconciling

NOW = datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC)


class Crash(Exception):
    """The operator process dies here."""


class CrashingClient(kube.Client):
    """The operator's client, which dies at the next status write when told to."""

    crash_at_status = False

    async def patch(self, path: str, patch: Any, content_type: str = kube.MERGE) -> dict[str, Any]:
        if self.crash_at_status and path.endswith("/status"):
            self.crash_at_status = False
            raise Crash(path)
        return await super().patch(path, patch, content_type)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Events the tick posts (Kopf posts them from its own queue, which only runs inside an operator)."""
    posted: list[tuple[str, str]] = []
    monkeypatch.setattr(kopf, "event", lambda obj, *, type, reason, message: posted.append((type, reason)))
    return posted


def setup(cluster: clusters.EmulatedCluster, kind: str) -> None:
    for collection, manifest in KINDS[kind].objects:
        cluster.create(collection, manifest)
    cluster.create(kube.deployment_path(NS), deployment("web", replicas=4))
    cluster.create(ROLLOUTS, rollout_manifest(KINDS[kind].routing))


async def ticks(api: kube.Client, until: Callable[[dict[str, Any]], bool], cluster: clusters.EmulatedCluster) -> None:
    for _ in range(60):
        await reconciling.tick(api, NS, "web", NOW)
        if until(cluster.rollout(NS, "web") or {}):
            return
        await asyncio.sleep(0.03)  # the Deployment controller makes pods ready meanwhile
    raise AssertionError(f"status never matched: {(cluster.rollout(NS, 'web') or {}).get('status')}")


def phase(wanted: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: (body.get("status") or {}).get("phase") == wanted


async def test_a_missing_route_stalls_the_rollout_with_a_condition_and_one_event(
    cluster: clusters.EmulatedCluster, api: kube.Client, events: list[tuple[str, str]]
) -> None:
    setup(cluster, "gatewayAPI")
    cluster.delete(KINDS["gatewayAPI"].user_path)

    for _ in range(3):
        await reconciling.tick(api, NS, "web", NOW)

    status = (cluster.rollout(NS, "web") or {})["status"]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "RouteNotFound")
    assert stalled["message"] == "HTTPRoute web not found"
    assert events == [("Warning", "RouteNotFound")]
    assert cluster.get(kube.deployment_path(NS, "web-primary")) is None, "nothing was touched"


@pytest.mark.parametrize("kind", ["gatewayAPI", "istio", "nginx"])
async def test_a_tick_killed_between_the_weight_write_and_the_status_write_converges(
    cluster: clusters.EmulatedCluster, events: list[tuple[str, str]], kind: str
) -> None:
    setup(cluster, kind)
    async with CrashingClient(kopf.ConnectionInfo(server=cluster.url)) as api:
        await ticks(api, phase("Stable"), cluster)
        cluster.patch(
            kube.deployment_path(NS, "web"),
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example/web:2.0"}]}}}},
        )
        await ticks(api, phase("Progressing"), cluster)

        # Tick until the router writes 10%, dying at the status write of that very tick.
        route_path = KINDS[kind].route_path
        for _ in range(60):
            before = cluster.get(route_path)
            api.crash_at_status = True
            try:
                await reconciling.tick(api, NS, "web", NOW)
            except Crash:
                pass
            api.crash_at_status = False
            after = cluster.get(route_path)
            if (
                after is not None
                and (before or {}).get("metadata", {}).get("resourceVersion") != after["metadata"]["resourceVersion"]
                and KINDS[kind].split(after)
                and sorted(KINDS[kind].split(after).values()) == [10, 90]
            ):
                break
            await __import__("asyncio").sleep(0.03)
        else:
            raise AssertionError("the router never wrote 10%")
        assert (cluster.rollout(NS, "web") or {})["status"].get("weight", 0) == 0, "the status write was lost"

        written = cluster.get(route_path)["metadata"]["resourceVersion"]  # type: ignore[index]
        await reconciling.tick(api, NS, "web", NOW)  # the restarted operator's first tick

    status = (cluster.rollout(NS, "web") or {})["status"]
    assert status["weight"] == 10 and status["phase"] == "Progressing"
    assert status.get("weightSettledAt") is not None
    assert cluster.get(route_path)["metadata"]["resourceVersion"] == written  # type: ignore[index]
    assert events.count(("Normal", "CanaryStarted")) == 1
