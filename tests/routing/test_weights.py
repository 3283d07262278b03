"""What every router does with weights, against the emulated API with the real CRDs' shapes: adopt the user's
route, change the split exactly, read it back, roll back to 0, survive a crash after its write, and give the
user's object back as it was."""

from __future__ import annotations

from collections.abc import Callable

import kopf
import pytest
from router_beds import ARM_NAMES, KINDS, NS, PRIMARY_REPLICAS, Bed, comparable

from canary_operator import kube, names

pytestmark = pytest.mark.parametrize("kind", sorted(KINDS))


async def test_the_route_is_adopted_once_the_primary_is_ready_with_all_traffic_on_it(
    make_bed: Callable[[str], Bed], kind: str
) -> None:
    bed = make_bed(kind)
    before = comparable(bed.cluster.get(bed.kind.user_path))

    await bed.router.reconcile(bed.rollout)
    state = await bed.settle(0)

    primary, canary = ARM_NAMES[kind]
    assert bed.split() == {primary: 100, canary: 0}
    assert state.weight == 0 and state.settled
    if kind != "nginx":  # the user's Ingress is never written; the others record what they change
        annotations = bed.cluster.get(bed.kind.user_path)["metadata"]["annotations"]  # type: ignore[index]
        assert annotations["canary.dev/managed-by"] == "web"
        assert "canary.dev/original-spec" in annotations
    else:
        assert comparable(bed.cluster.get(bed.kind.user_path)) == before


async def test_weights_are_exact_whatever_the_replica_counts_and_read_back(
    make_bed: Callable[[str], Bed], kind: str
) -> None:
    bed = make_bed(kind)
    await bed.settle(0)

    for weight in (10, 33, 50):
        state = await bed.settle(weight)
        assert bed.canary_share() == weight, f"the route sends {bed.split()}"
        assert state.weight == weight and state.settled
        canary = bed.cluster.deployment(NS, "web-canary")
        assert canary is not None and canary["spec"]["replicas"] == -(-PRIMARY_REPLICAS * weight // 100)


async def test_more_traffic_waits_for_a_ready_canary(make_bed: Callable[[str], Bed], kind: str) -> None:
    bed = make_bed(kind)
    await bed.settle(0)
    bed.cluster.hold_rollout(NS, "web-canary")  # the canary's pods never become ready

    for _ in range(3):
        await bed.router.set_weight(bed.arms(), 20, PRIMARY_REPLICAS)
    state = await bed.router.observe(bed.arms(), 20, PRIMARY_REPLICAS)

    assert bed.canary_share() == 0, "no request may go to a canary that cannot answer"
    assert state.weight == 0 and not state.settled
    assert bed.cluster.deployment(NS, "web-canary")["spec"]["replicas"] == 1  # type: ignore[index]


async def test_an_unchanged_weight_writes_nothing(make_bed: Callable[[str], Bed], kind: str) -> None:
    bed = make_bed(kind)
    await bed.settle(30)
    version = bed.route()["metadata"]["resourceVersion"]  # type: ignore[index]

    for _ in range(3):
        await bed.router.set_weight(bed.arms(), 30, PRIMARY_REPLICAS)

    assert bed.route()["metadata"]["resourceVersion"] == version  # type: ignore[index]


async def test_a_rollback_sends_everything_to_the_primary_at_once_then_scales_the_canary_down(
    make_bed: Callable[[str], Bed], kind: str
) -> None:
    bed = make_bed(kind)
    await bed.settle(50)

    await bed.router.set_weight(bed.arms(), 0, PRIMARY_REPLICAS)  # one call: the rollback tick

    assert bed.canary_share() == 0
    assert bed.cluster.deployment(NS, "web-canary")["spec"]["replicas"] == 0  # type: ignore[index]
    bed.wait_ready("web-canary")
    state = await bed.router.observe(bed.arms(), 0, PRIMARY_REPLICAS)
    assert state.weight == 0 and state.settled


async def test_a_crash_after_the_weight_write_converges_on_restart(make_bed: Callable[[str], Bed], kind: str) -> None:
    """The operator writes the weight, then dies before the status: the restarted one reads the weight back
    and finds nothing to write."""
    bed = make_bed(kind)
    await bed.settle(10)
    await bed.router.set_weight(bed.arms(), 50, PRIMARY_REPLICAS)  # scales the canary up first
    bed.wait_ready("web-canary")
    await bed.router.set_weight(bed.arms(), 50, PRIMARY_REPLICAS)  # the weight write; the process dies here
    written = bed.route()["metadata"]["resourceVersion"]  # type: ignore[index]

    async with kube.Client(kopf.ConnectionInfo(server=bed.cluster.url)) as restarted:
        router = bed.fresh_router(restarted)
        await router.reconcile(bed.rollout)
        state = await router.observe(bed.arms(), 50, PRIMARY_REPLICAS)
        await router.set_weight(bed.arms(), 50, PRIMARY_REPLICAS)

    assert state.weight == 50 and state.settled, "the status the restarted operator writes shows 50%"
    assert bed.route()["metadata"]["resourceVersion"] == written  # type: ignore[index]


async def test_deleting_the_rollout_gives_the_users_route_back_exactly(
    make_bed: Callable[[str], Bed], kind: str
) -> None:
    bed = make_bed(kind)
    before = comparable(bed.cluster.get(bed.kind.user_path))
    await bed.settle(30)
    assert comparable(bed.cluster.get(bed.kind.user_path)) != before or kind == "nginx"

    await bed.router.finalize(bed.rollout)
    await bed.router.finalize(bed.rollout)  # a retried delete handler: still exactly the original

    assert comparable(bed.cluster.get(bed.kind.user_path)) == before
    assert bed.cluster.get(kube.deployment_path(NS, names.canary("web"))) is not None  # not the router's
    if kind == "nginx":
        assert bed.route() is None, "the canary Ingress is gone"
