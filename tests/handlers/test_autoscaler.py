"""``spec.autoscalerRef`` at the I/O edge: a missing or clashing HPA is said once, in a condition and an Event."""

from __future__ import annotations

from typing import Any

from ticking import World, rollout_manifest

from canary_bench import emulation

HPA_SPEC = {
    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
    "minReplicas": 2,
    "maxReplicas": 12,
}


def hpas(world: World, name: str | None = None) -> str:
    path = f"/apis/autoscaling/v2/namespaces/{world.namespace}/horizontalpodautoscalers"
    return f"{path}/{name}" if name else path


def autoscaled(world: World) -> tuple[str, str, str] | None:
    found = [c for c in world.status().get("conditions", []) if c["type"] == "Autoscaled"]
    return (found[0]["status"], found[0]["reason"], found[0]["message"]) if found else None


def create_rollout_with_hpa(world: World) -> None:
    manifest: dict[str, Any] = rollout_manifest(world.namespace)
    manifest["spec"]["autoscalerRef"] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "name": "web",
    }
    world.cluster.create(world.path("canaryrollouts"), manifest)


async def test_a_missing_hpa_is_a_condition_and_one_warning_until_it_appears_and_is_carried_over(world: World) -> None:
    world.create_target()
    create_rollout_with_hpa(world)
    await world.until_stable()
    for _ in range(3):
        await world.tick()

    condition = autoscaled(world)
    assert condition is not None and condition[:2] == ("False", "AutoscalerNotFound"), condition
    assert "HorizontalPodAutoscaler web (spec.autoscalerRef) not found" in condition[2]
    assert world.posted().count(("Warning", "AutoscalerNotFound")) == 1, world.posted()
    assert world.cluster.get(hpas(world, "web-primary")) is None

    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"}
    world.cluster.create(
        hpas(world), {**hpa, "metadata": {"name": "web", "namespace": world.namespace}, "spec": HPA_SPEC}
    )
    await world.tick()
    await world.tick()

    assert autoscaled(world) == ("True", "AutoscalerCarriedOver", "the primary carries HorizontalPodAutoscaler web")
    primary_hpa = world.cluster.get(hpas(world, "web-primary"))
    assert primary_hpa is not None and primary_hpa["spec"]["scaleTargetRef"]["name"] == "web-primary"
    assert world.posted().count(("Warning", "AutoscalerNotFound")) == 1


async def test_an_hpa_of_someone_else_under_the_primarys_name_is_left_alone_and_said(world: World) -> None:
    world.create_target()
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"}
    world.cluster.create(
        hpas(world), {**hpa, "metadata": {"name": "web", "namespace": world.namespace}, "spec": HPA_SPEC}
    )
    theirs = {**HPA_SPEC, "maxReplicas": 3}
    created = world.cluster.create(
        hpas(world), {**hpa, "metadata": {"name": "web-primary", "namespace": world.namespace}, "spec": theirs}
    )
    create_rollout_with_hpa(world)
    await world.until_stable()
    await world.tick()

    condition = autoscaled(world)
    assert condition is not None and condition[:2] == ("False", "ObjectConflict"), condition
    assert world.posted().count(("Warning", "ObjectConflict")) == 1, world.posted()
    untouched = world.cluster.get(hpas(world, "web-primary"))
    assert untouched is not None and untouched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_a_canary_blocked_and_unblocked_does_not_say_again_that_the_hpa_is_missing(world: World) -> None:
    # Blocked mid-canary (here Git made the spec invalid), the tick reads no HPA: what was said of it stays said.
    world.create_target()
    create_rollout_with_hpa(world)
    await world.until_stable()
    world.set_image("example/web:2.0")
    await world.tick()
    await world.tick()
    assert world.status()["phase"] == "Progressing"
    assert world.posted().count(("Warning", "AutoscalerNotFound")) == 1, world.posted()

    world.cluster.patch(world.path("canaryrollouts", "web"), {"spec": {"analysis": {"interval": "0s"}}})
    await world.tick()
    assert ("Warning", "InvalidSpec") in world.posted()
    condition = autoscaled(world)
    assert condition is not None and condition[:2] == ("False", "AutoscalerNotFound"), "not observed: kept"

    world.cluster.patch(world.path("canaryrollouts", "web"), {"spec": {"analysis": {"interval": "10s"}}})
    await world.tick()
    await world.tick()
    assert world.status()["phase"] == "Progressing"
    assert world.posted().count(("Warning", "AutoscalerNotFound")) == 1, world.posted()


async def test_hpas_the_operator_cannot_read_are_said_once_and_a_failing_canary_is_still_rolled_back(
    world: World,
) -> None:
    world.create_target()
    create_rollout_with_hpa(world)
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"}
    world.cluster.create(
        hpas(world), {**hpa, "metadata": {"name": "web", "namespace": world.namespace}, "spec": HPA_SPEC}
    )
    await world.until_stable()
    forbidden = emulation.Respond(403, "Forbidden", "horizontalpodautoscalers is forbidden: RBAC")
    world.cluster.inject(
        emulation.Fault("get", "horizontalpodautoscalers", forbidden, namespace=world.namespace, count=None)
    )
    world.set_image("example/web:2.0")
    world.metrics.error_percent["canary"] = 30.0
    for _ in range(20):
        await world.tick(advance=2.0)
        if world.status().get("phase") == "RolledBack":
            break

    assert world.status()["phase"] == "RolledBack", world.status().get("message")
    condition = autoscaled(world)
    assert condition is not None and condition[:2] == ("False", "AutoscalerUnreadable"), condition
    assert world.posted().count(("Warning", "AutoscalerUnreadable")) == 1, world.posted()
    assert not world.status().get("reconcileErrors")
