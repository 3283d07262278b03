"""The routers inside the operator's tick (reconciling.tick, in process, against the emulator): a route that
cannot be split stalls the rollout with a specific condition and one Warning Event; a process killed right
after the router's weight write (before any status reports that weight) converges on the next tick."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Callable
from typing import Any

import kopf
import pytest
from helpers import assert_not_taken_over, deployment
from router_beds import ARM_NAMES, KINDS, NS, ROLLOUTS, rollout_manifest

from canary_bench import cluster as clusters
from canary_bench import emulation
from canary_operator import config, endpoints, kube, reconciling

NOW = datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture
async def metrics() -> AsyncIterator[endpoints.Source]:
    """The operator's metric source; the clock stands still, so no check falls due and nothing is queried."""
    source = endpoints.Source(config.PrometheusSettings(allowed_addresses=("http://127.0.0.1:9090",)))
    yield source
    await source.close()


class Crash(Exception):
    """The operator process dies here."""


class CrashingClient(kube.Client):
    """The operator's client; when armed, the process dies right after its next write to ``route``."""

    route: str | None = None

    async def _request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        result = await super()._request(method, path, body, content_type)
        if self.route is not None and method in ("PATCH", "POST") and path.startswith(self.route):
            self.route = None
            raise Crash(f"{method} {path}")
        return result


def events(cluster: clusters.EmulatedCluster) -> list[tuple[str, str]]:
    """The Events the operator posted about the rollout, as (type, reason)."""
    return [(e["type"], e["reason"]) for e in cluster.events(NS) if e["involvedObject"]["kind"] == "CanaryRollout"]


def setup(cluster: clusters.EmulatedCluster, kind: str) -> None:
    for collection, manifest in KINDS[kind].objects:
        cluster.create(collection, manifest)
    cluster.create(kube.deployment_path(NS), deployment("web", replicas=4))
    cluster.create(ROLLOUTS, rollout_manifest(KINDS[kind].routing))


async def ticks(
    api: kube.Client,
    until: Callable[[dict[str, Any]], bool],
    cluster: clusters.EmulatedCluster,
    metrics: endpoints.Source,
) -> None:
    for _ in range(60):
        await reconciling.tick(api, NS, "web", NOW, metrics)
        if until(cluster.rollout(NS, "web") or {}):
            return
        await asyncio.sleep(0.03)  # the Deployment controller makes pods ready meanwhile
    raise AssertionError(f"status never matched: {(cluster.rollout(NS, 'web') or {}).get('status')}")


def phase(wanted: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: (body.get("status") or {}).get("phase") == wanted


def new_revision(cluster: clusters.EmulatedCluster) -> None:
    image = {"name": "app", "image": "example/web:2.0"}
    cluster.patch(kube.deployment_path(NS, "web"), {"spec": {"template": {"spec": {"containers": [image]}}}})


async def canary_at_10(api: kube.Client, cluster: clusters.EmulatedCluster, metrics: endpoints.Source) -> None:
    """Taken over, then a new revision released until the route sends the canary its first 10%."""
    await ticks(api, phase("Stable"), cluster, metrics)
    new_revision(cluster)
    await ticks(api, lambda body: (body.get("status") or {}).get("weight") == 10, cluster, metrics)


async def test_a_missing_route_stalls_the_rollout_with_a_condition_and_one_event(
    cluster: clusters.EmulatedCluster, api: kube.Client, metrics: endpoints.Source
) -> None:
    setup(cluster, "gatewayAPI")
    cluster.delete(KINDS["gatewayAPI"].user_path)

    for _ in range(3):
        await reconciling.tick(api, NS, "web", NOW, metrics)

    status = (cluster.rollout(NS, "web") or {})["status"]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "RouteNotFound")
    assert stalled["message"] == "HTTPRoute web not found"
    assert events(cluster) == [("Warning", "RouteNotFound")]
    assert cluster.get(kube.deployment_path(NS, "web-primary")) is None, "nothing was touched"
    assert_not_taken_over(cluster.get(kube.deployment_path(NS, "web")), 4)


@pytest.mark.parametrize("kind", ["gatewayAPI", "istio", "nginx"])
async def test_a_tick_killed_after_the_weight_write_converges(
    cluster: clusters.EmulatedCluster, metrics: endpoints.Source, kind: str
) -> None:
    setup(cluster, kind)
    api = CrashingClient(kopf.ConnectionInfo(server=cluster.url))
    async with api:
        await ticks(api, phase("Stable"), cluster, metrics)
        new_revision(cluster)
        await ticks(api, phase("Progressing"), cluster, metrics)

        # Tick until the router writes the route, the process dying right after that write: 10% is in the
        # route, and no status says so.
        route_path = KINDS[kind].route_path
        for _ in range(60):
            api.route = route_path
            try:
                await reconciling.tick(api, NS, "web", NOW, metrics)
            except Crash:
                if sorted(KINDS[kind].split(cluster.get(route_path)).values()) == [10, 90]:
                    break
            await asyncio.sleep(0.03)  # the Deployment controller makes the canary ready meanwhile
        else:
            raise AssertionError("the router never wrote 10%")
        assert (cluster.rollout(NS, "web") or {})["status"].get("weight", 0) == 0, "no status says 10% yet"

        written = cluster.get(route_path)["metadata"]["resourceVersion"]  # type: ignore[index]
        await reconciling.tick(api, NS, "web", NOW, metrics)  # the restarted operator's first tick

    status = (cluster.rollout(NS, "web") or {})["status"]
    assert status["weight"] == 10 and status["phase"] == "Progressing"
    assert status.get("weightSettledAt") is not None
    assert cluster.get(route_path)["metadata"]["resourceVersion"] == written  # type: ignore[index]
    assert events(cluster).count(("Normal", "CanaryStarted")) == 1


@pytest.mark.parametrize("kind", ["gatewayAPI", "istio"])
async def test_a_route_reference_edited_to_a_missing_route_mid_canary_gives_the_traffic_back_on_the_old_route(
    cluster: clusters.EmulatedCluster, api: kube.Client, metrics: endpoints.Source, kind: str
) -> None:
    # Git renames the route in the spec to one that does not exist, while the old route sends 10% to the canary.
    # The current spec cannot give that 10% back: the route it names is not there. The spec last acted with can.
    setup(cluster, kind)
    await canary_at_10(api, cluster, metrics)
    field = "httpRoute" if kind == "gatewayAPI" else "virtualService"
    cluster.patch(f"{ROLLOUTS}/web", {"spec": {"trafficRouting": {kind: {field: "web-v2"}}}})
    user_route = KINDS[kind].route_path
    primary, canary = ARM_NAMES[kind]

    for _ in range(3):
        await reconciling.tick(api, NS, "web", NOW, metrics)
    status = (cluster.rollout(NS, "web") or {})["status"]
    assert (status["phase"], status["weight"]) == ("Progressing", 10), "within the deadline: kept"
    assert next(c for c in status["conditions"] if c["type"] == "Stalled")["reason"] == "RouteNotFound"

    later = NOW + datetime.timedelta(minutes=11)  # progressDeadline: the default 10m
    for _ in range(3):
        await reconciling.tick(api, NS, "web", later, metrics)
        await asyncio.sleep(0.05)  # the Deployment controller scales the canary down meanwhile
    status = (cluster.rollout(NS, "web") or {})["status"]
    assert status["phase"] == "RolledBack" and status["weight"] == 0
    split = KINDS[kind].split(cluster.get(user_route))
    assert split.get(canary, 0) == 0 and split[primary] > 0, "the old route sends everything to the primary"
    assert cluster.get(kube.deployment_path(NS, "web-canary"))["spec"]["replicas"] == 0  # type: ignore[index]
    reasons = [reason for _, reason in events(cluster)]
    assert reasons.count("RouteNotFound") == 1 and reasons.count("BlockedDeadlineExceeded") == 1


async def finalized(api: kube.Client, cluster: clusters.EmulatedCluster) -> None:
    """The delete handler, retried as Kopf does while it waits for the user's Deployment to be ready again."""
    for _ in range(60):
        try:
            await reconciling.finalize(api, cluster.rollout(NS, "web") or {})
            return
        except reconciling.NotYet:
            await asyncio.sleep(0.03)
    raise AssertionError("never finalized")


@pytest.mark.parametrize("kind", ["gatewayAPI", "istio"])
@pytest.mark.parametrize("edit", ["invalid", "renamed"])
async def test_a_rollout_deleted_mid_canary_after_git_broke_its_spec_gives_the_users_route_back(
    cluster: clusters.EmulatedCluster, api: kube.Client, metrics: endpoints.Source, kind: str, edit: str
) -> None:
    # The way out of a broken spec is to delete the CanaryRollout: the user's route must not be left naming the
    # Services that the deletion removes (every request through it would fail).
    setup(cluster, kind)
    user_route = KINDS[kind].route_path
    as_written = (cluster.get(user_route) or {})["spec"]
    await canary_at_10(api, cluster, metrics)
    if edit == "invalid":
        cluster.patch(f"{ROLLOUTS}/web", {"spec": {"analysis": {"interval": "0s"}}})  # the schema admits it
    else:
        field = "httpRoute" if kind == "gatewayAPI" else "virtualService"
        cluster.patch(f"{ROLLOUTS}/web", {"spec": {"trafficRouting": {kind: {field: "web-v2"}}}})
    await reconciling.tick(api, NS, "web", NOW, metrics)

    await finalized(api, cluster)
    assert cluster.get(kube.service_path(NS, "web-primary")) is None, "the operator's Services are gone"
    assert (cluster.get(user_route) or {})["spec"] == as_written, "the route is given back as it was written"


@pytest.mark.parametrize("kind", ["gatewayAPI", "istio"])
@pytest.mark.parametrize("edit", ["another route", "no route"])
async def test_the_split_moved_by_git_mid_canary_gives_the_old_route_back_as_written(
    cluster: clusters.EmulatedCluster, api: kube.Client, metrics: endpoints.Source, kind: str, edit: str
) -> None:
    # Left as it was, the old route would keep sending the canary 10%, and once the canary is scaled down,
    # 10% of its requests to a Service without pods.
    setup(cluster, kind)
    old_route = KINDS[kind].route_path
    as_written = (cluster.get(old_route) or {})["spec"]
    collection, manifest = KINDS[kind].objects[0]
    cluster.create(collection, {**manifest, "metadata": {**manifest["metadata"], "name": "web-v2"}})
    await canary_at_10(api, cluster, metrics)
    primary, canary = ARM_NAMES[kind]
    assert KINDS[kind].split(cluster.get(old_route)).get(canary) == 10
    field = "httpRoute" if kind == "gatewayAPI" else "virtualService"
    moved: dict[str, Any] = {kind: {field: "web-v2"}} if edit == "another route" else {kind: None, "replicas": {}}
    cluster.patch(f"{ROLLOUTS}/web", {"spec": {"trafficRouting": moved}})

    def acted_with(body: dict[str, Any]) -> Any:
        return ((body.get("status") or {}).get("appliedSpec", {}).get("trafficRouting") or {}).get(kind)

    await ticks(api, lambda body: acted_with(body) == moved[kind], cluster, metrics)
    assert (cluster.get(old_route) or {})["spec"] == as_written, "the old route as the user wrote it"
    status = (cluster.rollout(NS, "web") or {})["status"]
    assert status["phase"] == "Progressing", "the release goes on with the new split"
    if edit == "another route":
        await ticks(api, lambda body: (body.get("status") or {}).get("weightSettledAt") is not None, cluster, metrics)
        new_route = old_route.rsplit("/", 1)[0] + "/web-v2"
        split = KINDS[kind].split(cluster.get(new_route))
        assert split.get(canary) == 10 and split.get(primary) == 90


@pytest.mark.parametrize(("kind", "objects"), [("gatewayAPI", 1), ("istio", 1), ("nginx", 2)])
async def test_a_busy_tick_reads_each_route_object_once(
    cluster: clusters.EmulatedCluster, api: kube.Client, metrics: endpoints.Source, kind: str, objects: int
) -> None:
    """The router validates, observes and writes the route in one tick: one GET of each object it uses (the main
    and the canary Ingress for NGINX), then the API's answer to its own write; it read them 3 times before."""
    setup(cluster, kind)
    await ticks(api, phase("Stable"), cluster, metrics)
    new_revision(cluster)
    await reconciling.tick(api, NS, "web", NOW, metrics)  # the canary starts: its first weight is being set
    collection = KINDS[kind].objects[0][0]
    group_version = collection.removeprefix("/apis/").split("/namespaces/")[0]
    reads: list[str] = []
    tap = cluster.inject(
        emulation.Fault(
            "get",
            f"{group_version}/{collection.rsplit('/', 1)[-1]}",
            emulation.Call(lambda request: reads.append(request.name or "")),
            count=None,
        )
    )
    ticked = 0
    while ticked < 3 or not (cluster.rollout(NS, "web") or {})["status"].get("weightSettledAt"):
        assert ticked < 40, "the weight never settled"
        reads.clear()
        await reconciling.tick(api, NS, "web", NOW, metrics)
        ticked += 1
        assert len(reads) <= objects, f"one tick read {reads}"
        await asyncio.sleep(0.03)  # the Deployment controller makes pods ready meanwhile
    cluster.remove_fault(tap)
    assert (cluster.rollout(NS, "web") or {})["status"]["weight"] == 10, "the ticks did set the weight"


@pytest.mark.parametrize("kind", ["gatewayAPI", "istio"])
@pytest.mark.parametrize("edit", ["metrics", "names the rule"])
async def test_git_editing_the_split_on_the_same_route_mid_canary_keeps_the_canary_share(
    cluster: clusters.EmulatedCluster, api: kube.Client, metrics: endpoints.Source, kind: str, edit: str
) -> None:
    # trafficRouting.metrics says where the metric templates read, not which route splits: nothing is given
    # back. Naming the rule the router found by itself gives the route back and splits it again, in the same
    # tick: a router that kept its read from before the give-back saw the old split and wrote nothing.
    setup(cluster, kind)
    route = KINDS[kind].route_path
    await ticks(api, phase("Stable"), cluster, metrics)
    cluster.patch(
        kube.deployment_path(NS, "web"),
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example/web:2.0"}]}}}},
    )
    await ticks(api, lambda body: (body.get("status") or {}).get("weightSettledAt") is not None, cluster, metrics)
    primary, canary = ARM_NAMES[kind]
    written = []
    field = {"gatewayAPI": "rule", "istio": "route"}[kind]
    routing = {"metrics": "dataPlane"} if edit == "metrics" else {kind: {field: "app"}}
    cluster.patch(f"{ROLLOUTS}/web", {"spec": {"trafficRouting": routing}})
    for _ in range(3):
        await reconciling.tick(api, NS, "web", NOW, metrics)
        written.append(KINDS[kind].split(cluster.get(route)).get(canary))
    status = (cluster.rollout(NS, "web") or {})["status"]
    applied = status["appliedSpec"]["trafficRouting"]
    assert applied["metrics"] == "dataPlane" if edit == "metrics" else applied[kind][field] == "app"
    assert written == [10, 10, 10], "the route kept the canary's share on every tick"
    assert status["weightSettledAt"] is not None and status["phase"] == "Progressing"


@pytest.mark.parametrize("kind", ["gatewayAPI", "istio"])
async def test_a_give_back_of_the_moved_route_that_fails_is_done_by_the_next_tick_before_the_move_is_recorded(
    cluster: clusters.EmulatedCluster, api: kube.Client, metrics: endpoints.Source, kind: str
) -> None:
    # The process dies or the API refuses the give-back: the spec last acted with must still name the old route,
    # or no later tick would know to give it back.
    setup(cluster, kind)
    old_route = KINDS[kind].route_path
    as_written = (cluster.get(old_route) or {})["spec"]
    collection, manifest = KINDS[kind].objects[0]
    cluster.create(collection, {**manifest, "metadata": {**manifest["metadata"], "name": "web-v2"}})
    await canary_at_10(api, cluster, metrics)
    field = "httpRoute" if kind == "gatewayAPI" else "virtualService"
    cluster.patch(f"{ROLLOUTS}/web", {"spec": {"trafficRouting": {kind: {field: "web-v2"}}}})
    group_version = collection.removeprefix("/apis/").split("/namespaces/")[0]
    refusal = cluster.inject(
        emulation.Fault(
            "patch",
            f"{group_version}/{collection.rsplit('/', 1)[-1]}",
            emulation.Respond(500, "InternalError", "etcd timeout"),
            name="web",
            namespace=NS,
        )
    )
    with pytest.raises(kube.ApiError):
        await reconciling.tick(api, NS, "web", NOW, metrics)
    assert refusal.fired == 1
    applied = (cluster.rollout(NS, "web") or {})["status"]["appliedSpec"]["trafficRouting"]
    assert applied[kind] == {field: "web"}, "the move is not recorded before the old route is given back"

    await ticks(
        api, lambda body: body["status"]["appliedSpec"]["trafficRouting"][kind] == {field: "web-v2"}, cluster, metrics
    )
    assert (cluster.get(old_route) or {})["spec"] == as_written
