"""A canary blocked mid-way, at the I/O edge: which writes reach the API, with which spec, and when.

Blocked means a tick cannot go on until someone acts: Git made the spec invalid, Prometheus is refused, the
target Deployment was deleted. The canary keeps its weight for at most ``progressDeadline`` from the start of
the block, unchecked; then the rollback is recorded and the traffic goes back to the stable primary, through
the router and target the rollout last acted with (``status.appliedSpec``): the current spec may say nothing
usable. Each cause is told once (a condition and one Warning Event); nothing of anyone else's is written.
"""

from __future__ import annotations

import datetime
from typing import Any

import kopf
import pytest
from ticking import RECORD, Metrics, World, Write, image_of, stalled, whats

from canary_bench import emulation
from canary_operator import caching, config, endpoints, kube, main, models, reconciling

MINUTE = datetime.timedelta(minutes=1)


def replicas(world: World, name: str) -> int:
    return int(world.get("deployments", name)["spec"]["replicas"])


def edit_spec(world: World, spec: dict[str, Any]) -> None:
    """What a Git sync of the CanaryRollout sends (the schema admits it; the operator's model may not)."""
    world.cluster.patch(world.path("canaryrollouts", "web"), {"spec": spec})


async def canary_serving(world: World) -> None:
    """A taken-over target and a canary of example/web:2.0 serving its 50%, settled; no check due yet."""
    world.create_target()
    world.create_rollout()
    await world.until_stable()
    world.set_image("example/web:2.0")
    await world.tick()
    await world.tick()
    assert world.status()["phase"] == "Progressing" and world.status()["weightSettledAt"]
    assert replicas(world, "web-canary") > 0


class Refusing:
    """The operator's metric source once the platform team narrowed its allow-list: this address is refused."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.refused = False

    def check(self, analysis: models.Analysis) -> None:
        if self.refused:
            raise endpoints.NotAllowedError("http://prometheus.invalid:9090 is not in the operator's allow-list")

    async def provider(self, api: kube.Client, namespace: str, analysis: models.Analysis) -> Metrics:
        return self.metrics


async def tick_with(world: World, source: Refusing) -> list[Write]:
    start = len(world.writes)
    await reconciling.tick(world.api, world.namespace, "web", world.now, source)
    world.now += datetime.timedelta(seconds=1)
    world.settle()
    return world.writes[start:]


async def test_a_canary_blocked_by_an_invalid_spec_gives_its_traffic_back_at_the_progress_deadline(
    world: World,
) -> None:
    await canary_serving(world)
    canary_pods = replicas(world, "web-canary")
    edit_spec(world, {"analysis": {"interval": "0s"}})  # the CRD admits it; the model says at least 1s

    writes = await world.tick()
    assert whats(writes) == [RECORD, "event InvalidSpec", RECORD], "told once, nothing touched yet"
    assert stalled(world) == ("True", "InvalidSpec")
    world.now += 9 * MINUTE
    assert await world.tick() == [], "within the deadline: the canary keeps its weight, nothing is written"
    assert replicas(world, "web-canary") == canary_pods

    world.now += MINUTE
    writes = await world.tick()
    assert whats(writes)[:2] == [RECORD, "patch deployments/web-canary"], "recorded first, then given back"
    assert world.status()["phase"] == "RolledBack"
    assert replicas(world, "web-canary") == 0
    assert image_of(world, "web-primary") == "example/web:1.0" and replicas(world, "web-primary") == 4
    assert stalled(world) == ("True", "InvalidSpec"), "the condition names what to fix"

    for _ in range(3):
        world.now += MINUTE
        assert "patch deployments/web-canary" not in whats(await world.tick())
    assert world.posted()[-2:] == [("Warning", "InvalidSpec"), ("Warning", "BlockedDeadlineExceeded")]
    assert [reason for _, reason in world.posted()].count("InvalidSpec") == 1
    assert world.status()["weight"] == 0

    edit_spec(world, {"analysis": {"interval": "10s"}})  # fixed in Git
    await world.tick()
    assert world.status()["phase"] == "RolledBack", "the revision is not retried until it changes (or retry)"
    assert stalled(world) == ("True", "RolledBack")
    assert "blocked" not in world.status()


async def test_a_rollback_recorded_while_blocked_is_carried_out_by_the_next_tick(world: World) -> None:
    # The canary's scale-down meets a 500 (as a process killed right after the record would): the rollback is
    # recorded, and the next tick, still blocked, carries it out from the recorded status.
    await canary_serving(world)
    edit_spec(world, {"analysis": {"interval": "0s"}})
    await world.tick()
    world.now += 11 * MINUTE
    world.cluster.inject(
        emulation.Fault(
            "patch",
            "deployments",
            emulation.Respond(500, "InternalError", "etcd timeout"),
            name="web-canary",
            namespace=world.namespace,
        )
    )
    with pytest.raises(kube.ApiError):  # the daemon counts it and ticks again
        await world.tick()
    assert world.status()["phase"] == "RolledBack" and replicas(world, "web-canary") > 0
    await world.tick()
    assert replicas(world, "web-canary") == 0
    assert [reason for _, reason in world.posted()].count("BlockedDeadlineExceeded") == 1


async def test_with_progress_deadline_abort_false_a_blocked_canary_is_held_where_it_is(world: World) -> None:
    world.create_target()
    world.create_rollout()
    edit_spec(world, {"progressDeadlineAbort": False})
    await world.until_stable()
    world.set_image("example/web:2.0")
    await world.tick()
    await world.tick()
    canary_pods = replicas(world, "web-canary")
    edit_spec(world, {"analysis": {"interval": "0s"}})
    for _ in range(4):
        await world.tick()
        world.now += 5 * MINUTE
    assert world.status()["phase"] == "Paused" and world.status()["hold"] == "Deadline"
    assert replicas(world, "web-canary") == canary_pods
    assert [reason for _, reason in world.posted()].count("BlockedDeadlineExceeded") == 1


async def test_a_canary_whose_prometheus_is_refused_gives_its_traffic_back_at_the_deadline(world: World) -> None:
    await canary_serving(world)
    source = Refusing(world.metrics)
    source.refused = True
    writes = await tick_with(world, source)
    assert whats(writes) == [RECORD, "event PrometheusNotAllowed", RECORD]
    world.now += 11 * MINUTE
    await tick_with(world, source)
    assert world.status()["phase"] == "RolledBack" and replicas(world, "web-canary") == 0
    assert stalled(world) == ("True", "PrometheusNotAllowed")
    assert [reason for _, reason in world.posted()].count("PrometheusNotAllowed") == 1


async def test_a_canary_whose_target_is_deleted_is_given_back_and_nothing_else_is_written(world: World) -> None:
    await canary_serving(world)
    world.cluster.delete(world.path("deployments", "web"))
    writes = []
    for _ in range(5):
        writes += await world.tick()
    assert stalled(world) == ("True", "TargetNotFound")
    assert world.status()["phase"] == "Progressing", "within the deadline the canary keeps its weight"
    world.now += 11 * MINUTE
    for _ in range(3):
        writes += await world.tick()
    assert world.status()["phase"] == "RolledBack" and replicas(world, "web-canary") == 0
    assert image_of(world, "web-primary") == "example/web:1.0" and replicas(world, "web-primary") == 4
    assert {w.what for w in writes} <= {
        RECORD,
        "patch deployments/web-canary",
        "event TargetNotFound",
        "event BlockedDeadlineExceeded",
    }, "nothing is created again, nothing of anyone else's is touched"
    assert [reason for _, reason in world.posted()].count("TargetNotFound") == 1
    assert world.status().get("reconcileErrors", 0) == 0, "no tick failed"


async def test_a_spec_invalid_while_stable_touches_nothing_however_long(world: World) -> None:
    world.create_target()
    world.create_rollout()
    await world.until_stable()
    edit_spec(world, {"analysis": {"interval": "0s"}})
    writes = []
    for _ in range(4):
        writes += await world.tick()
        world.now += 60 * MINUTE
    assert whats(writes) == [RECORD, "event InvalidSpec", RECORD]
    assert world.status()["phase"] == "Stable"


async def test_steps_emptied_by_git_are_refused_at_admission_and_the_canary_goes_on(world: World) -> None:
    # Emptied steps never reach the operator: the CRD schema refuses them (minItems 1), and the stored spec,
    # with its steps, stays in force.
    await canary_serving(world)
    with pytest.raises(emulation.ApiError, match="steps") as refused:
        edit_spec(world, {"steps": []})
    assert refused.value.code == 422
    world.now += datetime.timedelta(seconds=10)
    await world.tick()
    # The check due one interval after the weight settled passes (no errors) at the only step: promoted.
    assert world.status()["phase"] == "Promoting"
    assert image_of(world, "web-primary") == "example/web:2.0"
    assert "blocked" not in world.status()
    assert [reason for _, reason in world.posted()][-2:] == ["StepAdvanced", "Promoting"]


async def test_a_blocked_rollback_refused_with_409_is_retried_at_the_busy_tick_not_the_idle_resync(
    world: World,
) -> None:
    # The rollback decided at the deadline is not recorded (409): the canary still serves, unchecked. The loop
    # must look again within tick_seconds, as after any 409, not sleep the idle resync of a rolled-back rollout.
    await canary_serving(world)
    edit_spec(world, {"analysis": {"interval": "0s"}})
    await world.tick()
    world.now += 11 * MINUTE
    refusal = world.on_status_write(
        emulation.conflict(), lambda r: (r.body.get("status") or {}).get("phase") == "RolledBack"
    )
    decision = await reconciling.tick(world.api, world.namespace, "web", world.now, Refusing(world.metrics))
    assert refusal.fired == 1 and world.status()["phase"] == "Progressing", "nothing recorded"
    settings = config.Settings(tick_seconds=1, idle_tick_seconds=30)
    assert main._wait(decision, world.now, settings).seconds <= settings.tick_seconds
    world.settle()
    await world.tick()
    assert world.status()["phase"] == "RolledBack" and replicas(world, "web-canary") == 0
    assert [reason for _, reason in world.posted()].count("BlockedDeadlineExceeded") == 1


def watched(world: World) -> caching.Deployments:
    """The watch cache as the watch last delivered the namespace's Deployments (a snapshot of them now)."""
    found = world.cluster.list(world.path("deployments"))
    return caching.Deployments({(world.namespace, d["metadata"]["name"]): [caching.trim(d)] for d in found})


def deployment_reads(world: World) -> emulation.Fault:
    """Counts the GETs of the namespace's Deployments from now on (they are answered as usual); the test's own
    reads (``replicas``) count too, so a test reads ``fired`` before it looks."""
    return world.cluster.inject(
        emulation.Fault("get", "deployments", emulation.Call(lambda _: None), namespace=world.namespace, count=None)
    )


async def tick_watched(world: World, cache: caching.Deployments, api: kube.Client | None = None) -> list[Write]:
    """One tick as the daemon runs it: the Deployments from the watch cache."""
    start = len(world.writes)
    source = Refusing(world.metrics)
    await reconciling.tick(api or world.api, world.namespace, "web", world.now, source, deployments=cache)
    world.now += datetime.timedelta(seconds=1)
    world.settle()
    return world.writes[start:]


async def test_a_blocked_canary_reads_its_deployments_from_the_watch_and_fresh_only_to_give_back(
    world: World,
) -> None:
    await canary_serving(world)
    edit_spec(world, {"analysis": {"interval": "0s"}})
    reads = deployment_reads(world)
    for _ in range(3):  # blocked, within the deadline: the canary keeps its weight
        await tick_watched(world, watched(world))
        world.now += MINUTE
    assert reads.fired == 0, "no GET while the canary is only held"  # 3 a tick before

    world.now += 9 * MINUTE
    writes = await tick_watched(world, watched(world))
    assert reads.fired == 3, "the give-back acts on the three Deployments as they are, read once"
    assert whats(writes)[:2] == [RECORD, "patch deployments/web-canary"], "recorded first, then given back"
    assert world.status()["phase"] == "RolledBack" and replicas(world, "web-canary") == 0

    before = reads.fired  # the test's own GET included
    later = []
    for _ in range(3):  # still blocked, the traffic given back, as the watch shows: nothing to act on
        world.now += MINUTE
        later += await tick_watched(world, watched(world))
    assert reads.fired == before
    assert whats(later) == [RECORD], "only the restore, recorded once it is observed"

    world.cluster.patch(world.path("deployments", "web-canary"), {"spec": {"replicas": 2}})  # someone scales it up
    world.settle()
    writes = await tick_watched(world, watched(world))  # the watch delivers it: given back again, read fresh
    assert reads.fired == before + 3 and "patch deployments/web-canary" in whats(writes)
    assert replicas(world, "web-canary") == 0


async def test_a_blocked_canary_whose_watch_stalled_gives_back_once_from_a_fresh_read(world: World) -> None:
    await canary_serving(world)
    stale = watched(world)  # the watch stalls here: the canary as it served, at its weight
    edit_spec(world, {"analysis": {"interval": "0s"}})
    async with kube.Client(kopf.ConnectionInfo(server=world.cluster.url), on_write=stale.remember) as api:
        await tick_watched(world, stale, api)
        world.now += 11 * MINUTE
        reads = deployment_reads(world)
        writes = await tick_watched(world, stale, api)
        assert reads.fired == 3 and whats(writes).count("patch deployments/web-canary") == 1
        world.now += MINUTE
        # The answer to its write shows the canary's scale-down under way: read fresh once more, nothing written.
        writes += await tick_watched(world, stale, api)
        assert reads.fired == 3 + 3
        for _ in range(2):  # what it read is remembered until the watch catches up: settled, nothing to act on
            world.now += MINUTE
            writes += await tick_watched(world, stale, api)
        assert reads.fired == 3 + 3 + 0
        assert whats(writes).count("patch deployments/web-canary") == 1, "given back once"
    assert world.status()["phase"] == "RolledBack" and replicas(world, "web-canary") == 0
