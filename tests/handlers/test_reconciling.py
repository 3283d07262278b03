"""One tick of the I/O edge at a time: exactly which writes reach the API, in which order, and the status patch.

The fast tier of issue 8: no operator process, no Prometheus. ``reconciling`` runs in the test's
loop against the emulated API, with a fake metric provider and an explicit clock; the emulator
records every write it receives, Events included. The protocol they pin down is record, then act:
the decision is written to ``.status`` first (one patch, guarded by the resourceVersion read, its
Events in the outbox), then the cluster is converged to it, then the Events are posted and the
outbox cleared. Each test is one thing a reviewer of the API's audit log would check.
"""

from __future__ import annotations

import contextlib
import datetime
from typing import Any

import pytest
from helpers import assert_not_taken_over
from ticking import RECORD, World, Write, image_of, stalled, stalled_condition, target_manifest, whats

from canary_bench import emulation
from canary_operator import kube, reconciling


def record(writes: list[Write]) -> dict[str, Any]:
    """The status the tick recorded: its first write (after the target's claim, on the first tick)."""
    acts = (
        writes[1:]
        if writes and writes[0].what == "patch deployments/web" and "claimed-by" in str(writes[0].body)
        else writes
    )
    assert acts and acts[0].what == RECORD, f"a tick records before it acts, got {whats(writes)}"
    return dict(acts[0].body["status"])


def outbox(writes: list[Write]) -> list[str]:
    return [event["reason"] for event in record(writes).get("pendingEvents") or []]


def replicas_of(write: Write) -> int | None:
    if isinstance(write.body, list):
        return next((op["value"] for op in write.body if op.get("path") == "/spec/replicas"), None)
    return (write.body.get("spec") or {}).get("replicas")


def refuse(world: World, effect: emulation.Effect, phase: str) -> emulation.Fault:
    """Answer the status write that records ``phase`` with ``effect`` (once)."""
    return world.on_status_write(effect, lambda r: r.body["status"].get("phase") == phase)


async def started(world: World) -> None:
    """A taken-over target and a canary of example/web:2.0 at its weight, settled (its check not yet due)."""
    world.create_target()
    world.create_rollout()
    await world.until_stable()
    world.set_image("example/web:2.0")
    await world.tick()  # CanaryStarted: the canary gets the new template and its replicas
    await world.tick()  # the weight is settled: checks are due one interval later
    assert world.status()["weightSettledAt"]
    world.now += datetime.timedelta(seconds=10)


async def test_the_takeover_records_the_target_size_then_creates_services_and_arms(world: World) -> None:
    world.create_target(replicas=4)
    world.create_rollout()
    first = await world.tick()
    assert whats(first) == [
        "patch deployments/web",  # the claim (canary.dev/claimed-by), before anything else is written
        RECORD,
        "create services/web",
        "create services/web-primary",
        "create services/web-canary",
        "create deployments/web-primary",
        "create deployments/web-canary",
        RECORD,  # the Services as made (servicesDigest): a spec that wants others makes them again
    ]
    assert first[-1].body["status"] == {"servicesDigest": world.status()["servicesDigest"]}
    assert first[0].body["metadata"]["annotations"] == {
        "canary.dev/claimed-by": world.get("canaryrollouts", "web")["metadata"]["uid"]
    }
    assert (record(first)["phase"], record(first)["targetReplicas"]) == ("Initializing", 4)
    assert world.get("deployments", "web")["spec"]["replicas"] == 4, "web serves until the primary is ready"
    with pytest.raises(AssertionError, match="the target was claimed"):  # what the stalled cases rule out
        assert_not_taken_over(world.get("deployments", "web"), 4)


async def test_the_takeover_scales_the_target_to_zero_once_the_primary_is_ready_and_then_says_so(
    world: World,
) -> None:
    world.create_target(replicas=4)
    world.create_rollout()
    await world.tick()
    second = await world.tick()
    assert whats(second) == [RECORD, "patch deployments/web", "event Initialized", RECORD]
    assert (record(second)["phase"], outbox(second)) == ("Stable", ["Initialized"])
    assert replicas_of(second[1]) == 0
    assert second[-1].body["status"] == {"pendingEvents": []}, "the outbox is emptied once posted"
    assert world.get("deployments", "web-primary")["spec"]["replicas"] == 4
    assert world.posted() == [("Normal", "Initialized")]


async def test_a_tick_with_nothing_changed_writes_nothing(world: World) -> None:
    world.create_target()
    world.create_rollout()
    await world.until_stable()
    assert await world.tick() == []
    assert await world.tick() == []


async def test_the_decision_is_guarded_by_the_resource_version_it_was_made_on(world: World) -> None:
    world.create_target()
    world.create_rollout()
    before = world.get("canaryrollouts", "web")["metadata"]["resourceVersion"]
    first = await world.tick()
    assert first[1].body["metadata"] == {"resourceVersion": before}  # after the claim of the target


async def test_a_new_image_is_recorded_then_the_canary_gets_it_and_its_weight(world: World) -> None:
    world.create_target()
    world.create_rollout()
    await world.until_stable()
    await world.tick()
    stable = world.status()["stableRevision"]
    world.set_image("example/web:2.0")
    writes = await world.tick()
    assert whats(writes) == [
        RECORD,
        "patch deployments/web-canary",  # the new pod template
        "patch deployments/web-canary",  # its replicas for 50%
        "event CanaryStarted",
        RECORD,
    ]
    recorded = record(writes)
    assert (recorded["phase"], recorded["currentStepIndex"]) == ("Progressing", 0)
    assert recorded["canaryRevision"] != stable and outbox(writes) == ["CanaryStarted"]
    assert isinstance(writes[1].body, list) and any(op["path"] == "/spec/template" for op in writes[1].body)
    assert replicas_of(writes[2]) == 4, "50% next to a primary of 4"
    settled = await world.tick()
    assert whats(settled) == [RECORD], "settling writes the status only"
    assert record(settled)["weight"] == 50


async def test_a_passing_check_records_promoting_then_the_primary_gets_the_new_template(world: World) -> None:
    await started(world)
    promoting = await world.tick()
    assert whats(promoting) == [
        RECORD,
        "patch deployments/web-primary",
        "event StepAdvanced",
        "event Promoting",
        RECORD,
    ]
    assert record(promoting)["phase"] == "Promoting"
    done = await world.tick()
    assert whats(done) == [RECORD, "patch deployments/web-canary", "event Promoted", RECORD]
    assert record(done)["phase"] == "Succeeded" and replicas_of(done[1]) == 0
    assert image_of(world, "web-primary") == "example/web:2.0"


async def test_a_failing_check_records_the_rollback_then_scales_the_canary_to_zero(world: World) -> None:
    await started(world)
    world.metrics.error_percent["canary"] = 5.0
    writes = await world.tick()
    assert whats(writes) == [RECORD, "patch deployments/web-canary", "event RolledBack", RECORD]
    recorded = record(writes)
    assert (recorded["phase"], recorded["rejectedRevision"]) == ("RolledBack", world.status()["canaryRevision"])
    assert replicas_of(writes[1]) == 0
    assert world.posted()[-1] == ("Warning", "RolledBack")
    assert image_of(world, "web-primary") == "example/web:1.0", "the primary never ran the rejected revision"


async def test_a_rollback_refused_with_409_does_nothing_and_the_next_tick_does_it_once(world: World) -> None:
    await started(world)
    world.metrics.error_percent["canary"] = 5.0
    refusal = refuse(world, emulation.conflict(), "RolledBack")
    refused = await world.tick()
    assert whats(refused) == [RECORD] and refusal.fired == 1, "nothing of a decision that was not recorded happens"
    assert world.get("deployments", "web-canary")["spec"]["replicas"] == 4
    again = await world.tick()
    assert whats(again) == [RECORD, "patch deployments/web-canary", "event RolledBack", RECORD]
    assert [reason for _, reason in world.posted()].count("RolledBack") == 1


@pytest.mark.parametrize(
    "effect",
    [emulation.conflict(), emulation.Call(lambda request: None, apply=False)],
    ids=["409", "lost"],
)
async def test_an_outbox_clear_refused_or_lost_posts_each_event_once(world: World, effect: emulation.Effect) -> None:
    await started(world)
    world.metrics.error_percent["canary"] = 5.0
    clearing = world.on_status_write(effect, lambda r: r.body["status"] == {"pendingEvents": []})
    await tick_as_the_daemon_does(world)  # rollback recorded and acted on, its Event posted; emptying the outbox fails
    assert clearing.fired == 1
    # The outbox, still holding the posted Event, is posted again (by the failure report or the next tick): the
    # same derived name is refused as AlreadyExists, then the outbox is emptied.
    await tick_as_the_daemon_does(world)
    assert world.status()["pendingEvents"] == []
    assert [reason for _, reason in world.posted()].count("RolledBack") == 1


async def test_a_rollback_recorded_but_not_acted_on_is_finished_by_the_next_tick_not_undone(world: World) -> None:
    await started(world)
    world.metrics.error_percent["canary"] = 5.0
    lost = world.cluster.inject(  # the operator dies as its scale-to-0 leaves: the write never lands
        emulation.Fault(
            "patch",
            "deployments",
            emulation.Call(lambda _: None, apply=False),
            name="web-canary",
            namespace=world.namespace,
        )
    )
    with pytest.raises(kube.ApiError):
        await world.tick()
    assert lost.fired == 1 and world.status()["phase"] == "RolledBack"
    again = await world.tick()
    # The Events recorded with the rollback are posted first, then the recorded intent is converged to.
    acts = [w for w in again if w.what != RECORD]
    assert whats(acts) == ["event RolledBack", "patch deployments/web-canary"]
    assert replicas_of(acts[1]) == 0 and world.get("deployments", "web-canary")["spec"]["replicas"] == 0
    assert [reason for _, reason in world.posted()].count("RolledBack") == 1


def foreign_service(world: World) -> None:
    world.cluster.create(
        world.path("services"),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}},
    )


async def test_a_service_of_somebody_else_in_the_way_stalls_the_takeover_and_touches_nothing(world: World) -> None:
    world.create_target()
    foreign_service(world)
    world.create_rollout()
    writes = await world.tick()
    assert whats(writes) == [RECORD, "event ObjectConflict", RECORD], "only the status and its Event"
    found = stalled_condition(record(writes))
    assert (found["status"], found["reason"]) == ("True", "ObjectConflict")
    assert_not_taken_over(world.get("deployments", "web"), 4)  # it keeps serving, unclaimed
    await world.tick()
    assert world.status().get("phase") != "Stable", "the status never claims what the cluster does not run"
    assert world.posted() == [("Warning", "ObjectConflict")], "one Event for one problem"


async def test_deletion_restores_the_target_before_it_removes_the_primary(world: World) -> None:
    world.create_target(replicas=4)
    world.create_rollout()
    await world.until_stable()
    with pytest.raises(reconciling.NotYet, match="restored web to 4 replicas"):
        await world.finalize()
    assert whats(world.writes[-1:]) == ["patch deployments/web"]
    removed = await world.finalize()
    assert whats(removed) == [
        "patch services/web",  # handed over, before anything it selects goes
        "delete deployments/web-canary",
        "delete deployments/web-primary",
        "delete services/web-canary",
        "delete services/web-primary",
        "patch deployments/web",  # the claim given up
    ]
    assert world.get("deployments", "web")["spec"]["replicas"] == 4
    apex = world.get("services", "web")
    assert apex["spec"]["selector"] == {"app": "web"}, "the Service web now selects web's own pods"
    assert not apex["metadata"].get("ownerReferences"), "the garbage collector leaves it"
    assert not any(key.startswith("canary.dev/") for key in apex["metadata"].get("labels") or {})
    assert apex["metadata"]["annotations"] == {"canary.dev/handed-over": "web"}


async def test_a_hand_over_refused_with_409_is_done_by_the_retried_delete_handler_with_nothing_lost(
    world: World,
) -> None:
    world.create_target(replicas=4)
    world.create_rollout()
    await world.until_stable()
    with pytest.raises(reconciling.NotYet):
        await world.finalize()
    refusal = world.cluster.inject(
        emulation.Fault("patch", "services", emulation.conflict(), name="web", namespace=world.namespace)
    )
    with pytest.raises(kube.ConflictError):  # Kopf retries the delete handler
        await world.finalize()
    assert refusal.fired == 1
    assert world.get("services", "web")["metadata"]["ownerReferences"], "still ours: nothing half done"
    assert world.get("deployments", "web-primary"), "nothing removed before the Service was handed over"
    removed = await world.finalize()
    assert whats(removed)[0] == "patch services/web"
    apex = world.get("services", "web")
    assert apex["spec"]["selector"] == {"app": "web"} and not apex["metadata"].get("ownerReferences")
    assert world.cluster.get(world.path("deployments", "web-primary")) is None


async def test_a_rollout_created_again_takes_back_the_service_handed_over_and_nothing_else(world: World) -> None:
    world.create_target(replicas=4)
    world.create_rollout()
    await world.until_stable()
    with pytest.raises(reconciling.NotYet):
        await world.finalize()
    await world.finalize()
    world.cluster.delete(world.path("canaryrollouts", "web"))
    world.settle()
    assert world.get("services", "web")["metadata"]["annotations"] == {"canary.dev/handed-over": "web"}

    world.create_rollout()  # a new uid: the old one's objects are not its own, but the handed-over Service is
    await world.until_stable()
    apex = world.get("services", "web")
    uid = world.get("canaryrollouts", "web")["metadata"]["uid"]
    assert [ref["uid"] for ref in apex["metadata"]["ownerReferences"]] == [uid]
    assert apex["spec"]["selector"] == {"canary.dev/rollout": "web"}, "both arms, as the replicas router wants"
    assert "canary.dev/handed-over" not in (apex["metadata"].get("annotations") or {})
    assert ("Warning", "ObjectConflict") not in world.posted()


async def test_a_service_handed_over_for_another_target_is_not_taken(world: World) -> None:
    world.create_target()
    world.cluster.create(
        world.path("services"),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "annotations": {"canary.dev/handed-over": "api"}},
            "spec": {"ports": [{"port": 80}]},
        },
    )
    world.create_rollout()
    writes = await world.tick()
    assert whats(writes) == [RECORD, "event ObjectConflict", RECORD]


async def tick_as_the_daemon_does(world: World) -> None:
    """One turn of ``main.run_rollout``: a tick, and an API refusal counted in the status."""
    try:
        await world.tick()
    except kube.ApiError as exc:
        with contextlib.suppress(kube.ApiError):  # a failure to say so is only logged
            await reconciling.report_failure(world.api, world.namespace, "web", str(exc), world.now)


async def test_a_claim_of_the_target_refused_with_409_decides_nothing_and_the_next_tick_takes_over(
    world: World,
) -> None:
    world.create_target(replicas=4)
    world.create_rollout()
    refusal = world.cluster.inject(
        emulation.Fault(
            "patch",
            "deployments",
            emulation.conflict(),
            name="web",
            namespace=world.namespace,
            when=lambda r: "claimed-by" in str(r.body),
        )
    )
    refused = await world.tick()
    assert refusal.fired == 1
    assert [w for w in whats(refused) if w != "patch deployments/web"] == [], "nothing recorded or created"
    assert world.status().get("phase") is None and world.get("deployments", "web")["spec"]["replicas"] == 4
    taken = await world.tick()
    assert whats(taken)[:2] == ["patch deployments/web", RECORD] and world.status()["phase"] == "Initializing"
    await world.until_stable()
    assert [reason for _, reason in world.posted()].count("Initialized") == 1


async def test_an_action_refused_every_tick_stalls_the_rollout_once_with_the_cause(world: World) -> None:
    world.create_target()
    world.create_rollout()
    await world.until_stable()
    refusal = world.cluster.inject(  # an admission policy refuses the new image on web-canary, every time
        emulation.Fault(
            "patch",
            "deployments",
            emulation.Respond(403, "Forbidden", "image example/web:2.0 is not allowed"),
            name="web-canary",
            namespace=world.namespace,
            count=None,
        )
    )
    world.set_image("example/web:2.0")
    for _ in range(5):
        await tick_as_the_daemon_does(world)
    assert stalled(world) == ("True", "ReconcileError")
    assert "is not allowed" in stalled_condition(world.status())["message"]
    assert [reason for _, reason in world.posted()].count("ReconcileError") == 1
    world.cluster.remove_fault(refusal)  # the policy is fixed: the next tick goes through and clears it
    await tick_as_the_daemon_does(world)
    assert world.status()["reconcileErrors"] == 0 and image_of(world, "web-canary") == "example/web:2.0"
    assert stalled(world)[0] == "False"


async def test_a_target_ref_changed_after_the_takeover_stalls_and_touches_neither_deployment(world: World) -> None:
    world.create_target()
    api = target_manifest(world.namespace, image="example/api:1.0", replicas=3)
    api["metadata"]["name"] = "api"
    world.cluster.create(world.path("deployments"), api)
    world.create_rollout()
    await world.until_stable()
    world.cluster.patch(world.path("canaryrollouts", "web"), {"spec": {"targetRef": {"name": "api"}}})
    writes = await world.tick()
    await world.tick()
    assert whats(writes) == [RECORD, "event InvalidSpec", RECORD], "only the status and its Event"
    assert stalled(world) == ("True", "InvalidSpec")
    assert "targetRef" in stalled_condition(world.status())["message"]
    assert_not_taken_over(world.get("deployments", "api"), 3)  # api keeps serving, unclaimed
    assert world.cluster.get(world.path("deployments", "api-primary")) is None
    assert image_of(world, "web-primary") == "example/web:1.0", "web keeps being served by its primary"


async def test_events_refused_for_good_never_keep_a_bad_canary_from_being_rolled_back(world: World) -> None:
    world.create_target()
    world.create_rollout()
    await world.until_stable()
    world.cluster.inject(  # a quota on Events in the namespace: every Event is refused from now on
        emulation.Fault(
            "create",
            "events",
            emulation.Respond(403, "Forbidden", "exceeded quota: events, requested: count/events=1"),
            namespace=world.namespace,
            count=None,
        )
    )
    world.metrics.error_percent["canary"] = 5.0
    world.set_image("example/web:2.0")
    for _ in range(15):
        await tick_as_the_daemon_does(world)
    assert world.status()["phase"] == "RolledBack"
    assert world.get("deployments", "web-canary")["spec"]["replicas"] == 0
    assert world.status()["pendingEvents"] == [], "an Event refused for good is dropped, not kept for ever"


async def port_changed_in_git_with_a_service_patch_refused(world: World) -> emulation.Fault:
    """A Stable rollout whose spec.service.port Git changes to 8080; the next patch of web-canary answers 500."""
    world.create_target()
    world.create_rollout()
    await world.until_stable()
    await world.tick()
    world.cluster.patch(world.path("canaryrollouts", "web"), {"spec": {"service": {"port": 8080}}})
    return world.cluster.inject(
        emulation.Fault("patch", "services", emulation.server_error(), name="web-canary", namespace=world.namespace)
    )


async def test_a_service_port_changed_in_git_after_the_takeover_reaches_the_services_once(world: World) -> None:
    failing = await port_changed_in_git_with_a_service_patch_refused(world)
    with pytest.raises(kube.ApiError):
        await world.tick()  # a Service patch is refused: the digest is not written, so the next tick makes them again
    world.cluster.remove_fault(failing)
    assert world.get("services", "web-canary")["spec"]["ports"][0]["port"] == 80
    changed = await world.tick()
    ports = {
        name: world.get("services", name)["spec"]["ports"][0]["port"] for name in ("web", "web-primary", "web-canary")
    }
    assert ports == {"web": 8080, "web-primary": 8080, "web-canary": 8080}
    assert "patch canaryrollouts/web/status" in whats(changed)

    quiet = await world.tick()
    assert whats(quiet) == [], "made once: no Service is read or written again"


async def test_services_made_after_a_failed_tick_stay_recorded_as_made(world: World) -> None:
    # The tick after a failure writes the failure count back to 0 once it went through: not the digest of the
    # Services as they were before this tick made them again.
    failing = await port_changed_in_git_with_a_service_patch_refused(world)
    await tick_as_the_daemon_does(world)
    world.cluster.remove_fault(failing)
    assert world.status()["reconcileErrors"] == 1
    before = world.status()["servicesDigest"]

    await tick_as_the_daemon_does(world)
    assert world.status()["reconcileErrors"] == 0
    assert world.get("services", "web-canary")["spec"]["ports"][0]["port"] == 8080
    assert world.status()["servicesDigest"] != before, "the Services are recorded as made for port 8080"
    quiet = await world.tick()
    assert whats(quiet) == [], "made once: no Service is read or written again"


async def test_a_busy_tick_writes_the_status_twice_the_decision_before_acting_and_what_acting_made_true_after(
    world: World,
) -> None:
    # Everything a tick can owe its status after acting at once: Services to record as made (port 8080), an
    # Event in the outbox (CanaryStarted) and a failure in a row to end. One patch says all three, once they hold.
    failing = await port_changed_in_git_with_a_service_patch_refused(world)
    await tick_as_the_daemon_does(world)
    world.cluster.remove_fault(failing)
    assert world.status()["reconcileErrors"] == 1
    world.set_image("example/web:2.0")

    busy = await world.tick()
    statuses = [w for w in busy if w.what == RECORD]
    assert len(statuses) == 2, whats(busy)  # 4 before: the digest, the outbox and the failures each had their own
    assert (record(busy)["phase"], outbox(busy)) == ("Progressing", ["CanaryStarted"])
    assert "reconcileErrors" not in record(busy), "the failure stays counted until the tick has gone through"
    assert statuses[1].body["status"] == {
        "pendingEvents": [],
        "servicesDigest": world.status()["servicesDigest"],
        "reconcileErrors": 0,
    }
    acted = whats(busy)[: whats(busy).index(RECORD, 1)]
    assert {"patch services/web-canary", "patch deployments/web-canary", "event CanaryStarted"} <= set(acted), (
        "recorded as done only once done"
    )
    assert world.get("services", "web-canary")["spec"]["ports"][0]["port"] == 8080
    assert world.posted()[-1] == ("Normal", "CanaryStarted")
