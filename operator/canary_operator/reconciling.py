"""One tick of a CanaryRollout, with its I/O: observe, decide (pure), apply, write status once.

The Kopf handlers in ``main.py`` call ``tick`` in a loop and ``finalize`` on
deletion; everything here talks to the outside through ``kube.Client``, a
``routing.TrafficRouter`` and a ``providers.MetricProvider``, and leaves every
decision to ``rollouts.reconcile``.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf
import pydantic

from canary_operator import judging, kube, logs, measuring, models, providers, rollouts, routing, telemetry, workloads

ProviderFactory = Callable[[models.Analysis], providers.MetricProvider]


class OwnershipError(Exception):
    """An object the operator must create exists and belongs to somebody else."""


async def tick(
    api: kube.Client,
    namespace: str,
    name: str,
    now: datetime.datetime,
    provider_for: ProviderFactory = providers.for_analysis,
) -> rollouts.Decision | None:
    """Reconcile one CanaryRollout once; None when it is gone or being deleted."""
    body = await api.get(kube.rollout_path(namespace, name))
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    generation = int(body["metadata"].get("generation") or 1)
    status = models.parse_status(body.get("status"))
    logs.bind_rollout(namespace, name, status)
    try:
        spec = models.parse_spec(body.get("spec"))
    except pydantic.ValidationError as exc:
        decision = rollouts.blocked(status, generation, "InvalidSpec", f"invalid spec: {models.explain(exc)}", now)
        await _publish(api, body, decision)
        telemetry.observe_status(namespace, name, None, decision.status)
        return decision

    target_name = spec.target_ref.name
    target_doc, primary_doc, canary_doc = await asyncio.gather(
        api.get(kube.deployment_path(namespace, target_name)),
        api.get(kube.deployment_path(namespace, workloads.primary_name(target_name))),
        api.get(kube.deployment_path(namespace, workloads.canary_name(target_name))),
    )
    arms = routing.Arms(namespace, target_name, workloads.workload_of(primary_doc), workloads.workload_of(canary_doc))
    router = routing.for_rollout(spec, api)
    primary_replicas = rollouts.primary_replicas(status.target_replicas)
    traffic = await router.observe(arms, rollouts.desired_weight(spec, status), primary_replicas)

    provider: providers.MetricProvider | None = None
    check = None
    if rollouts.check_due(spec, status, now):
        provider = provider_for(spec.analysis)
        since = datetime.datetime.fromisoformat(status.canary_started_at) if status.canary_started_at else None
        measurements = await measuring.measure(spec, namespace, traffic.weight, now, provider, since)
        check = judging.judge(spec.analysis, measurements, slo=spec.slo, tighten=rollouts.tighten_factor(spec, status))

    target = workloads.target_of(target_doc)
    budget = judging.Reading()
    if rollouts.wants_budget(spec, status, target.revision if target else None):
        budget = await measuring.error_budget(spec, namespace, now, provider or provider_for(spec.analysis))

    annotations = body["metadata"].get("annotations") or {}
    observations = rollouts.Observations(
        generation=generation,
        target=target,
        primary=arms.primary,
        canary=arms.canary,
        weight=traffic.weight,
        traffic_settled=traffic.settled,
        check=check,
        promote_requested=rollouts.PROMOTE_ANNOTATION in annotations,
        budget_remaining=budget.value,
        budget_problem=budget.detail or (budget.problem or ""),
        force_release=rollouts.FORCE_ANNOTATION in annotations,
    )
    decision = rollouts.reconcile(spec, status, observations, now)
    logs.bind_release(decision.status)
    try:
        for action in decision.actions:
            await _apply(api, body, spec, action, target_doc, primary_doc, canary_doc, arms, router)
    except OwnershipError as exc:
        decision = rollouts.blocked(decision.status, generation, "ObjectConflict", str(exc), now)
    if check is not None:
        logs.get().info(
            "check",
            verdict=check.verdict.value,
            reason=check.reason,
            weight=check.weight,
            metrics=[m.model_dump(mode="json", by_alias=True, exclude_none=True) for m in check.metrics],
        )
    await _publish(api, body, decision)
    _observe(namespace, name, spec, decision, check)
    forget = {a.key: None for a in decision.actions if isinstance(a, rollouts.ForgetAnnotation)}
    if forget:  # after the status patch, so that a failed patch does not lose what the annotation asked for
        await api.patch(kube.rollout_path(namespace, name), {"metadata": {"annotations": forget}})
    return decision


def _observe(
    namespace: str,
    name: str,
    spec: models.CanaryRolloutSpec,
    decision: rollouts.Decision,
    check: models.CheckRecord | None,
) -> None:
    telemetry.observe_status(namespace, name, spec, decision.status)
    if check is not None:
        telemetry.observe_check(namespace, name, check)
    for release in decision.finished:
        telemetry.observe_release(namespace, name, release)
        logs.get().info("release finished", **release.model_dump(mode="json", exclude_none=True))
    if decision.restored is not None:
        telemetry.observe_restore(namespace, name, decision.restored)
        logs.get().info("traffic restored", **decision.restored.model_dump(mode="json", exclude_none=True))


async def _publish(api: kube.Client, body: Mapping[str, Any], decision: rollouts.Decision) -> None:
    """Events first (they describe the transition), then the one status patch, skipped when unchanged."""
    log = logs.get()
    for event in decision.events:
        kopf.event(kopf.Body(cast(kopf.RawBody, body)), type=event.type, reason=event.reason, message=event.message)
        (log.warning if event.type == "Warning" else log.info)(event.reason, message=event.message)
    patch = kube.merge_patch(body.get("status") or {}, decision.status.to_wire())
    if patch:
        meta = body["metadata"]
        await api.patch(
            kube.rollout_path(meta["namespace"], meta["name"]) + "/status",
            {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": patch},
        )


def _template_patch(template: Mapping[str, Any], revision: str, replicas: int | None) -> list[dict[str, Any]]:
    # A JSON patch replaces the pod template whole: a merge patch could not remove a container or an env var.
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {
            "op": "add",
            "path": "/metadata/annotations/" + workloads.REVISION_ANNOTATION.replace("/", "~1"),
            "value": revision,
        },
    ]
    if replicas is not None:
        ops.append({"op": "replace", "path": "/spec/replicas", "value": replicas})
    return ops


async def _ensure_arm(
    api: kube.Client,
    rollout: Mapping[str, Any],
    target_doc: Mapping[str, Any] | None,
    existing: Mapping[str, Any] | None,
    arm: str,
    template: Mapping[str, Any],
    revision: str,
    replicas: int | None,
) -> None:
    assert target_doc is not None  # the state machine asks for arms only when the target exists
    namespace = rollout["metadata"]["namespace"]
    desired = workloads.arm_deployment(rollout, target_doc, arm, template, revision, replicas or 0)
    if existing is None:
        await api.create(kube.deployment_path(namespace), desired)
        return
    if not workloads.owned_by(existing, rollout):
        raise OwnershipError(
            f"Deployment {desired['metadata']['name']} exists and is not managed by this CanaryRollout"
        )
    current = workloads.workload_of(existing)
    assert current is not None
    if current.revision == revision and (replicas is None or current.replicas == replicas):
        return
    await api.patch(
        kube.deployment_path(namespace, desired["metadata"]["name"]),
        _template_patch(desired["spec"]["template"], revision, replicas),
        kube.JSON_PATCH,
    )


async def _ensure_services(api: kube.Client, rollout: Mapping[str, Any], spec: models.CanaryRolloutSpec) -> None:
    namespace = rollout["metadata"]["namespace"]
    for desired in workloads.services(rollout, spec):
        name = desired["metadata"]["name"]
        existing = await api.get(kube.service_path(namespace, name))
        if existing is None:
            await api.create(kube.service_path(namespace), desired)
        elif not workloads.owned_by(existing, rollout):
            raise OwnershipError(
                f"Service {name} exists and is not managed by this CanaryRollout; remove it or rename the target"
            )
        elif (
            existing["spec"].get("selector") != desired["spec"]["selector"]
            or existing["spec"].get("ports") != desired["spec"]["ports"]
        ):
            await api.patch(
                kube.service_path(namespace, name),
                {"spec": {"selector": desired["spec"]["selector"], "ports": desired["spec"]["ports"]}},
            )


async def _apply(
    api: kube.Client,
    rollout: Mapping[str, Any],
    spec: models.CanaryRolloutSpec,
    action: rollouts.Action,
    target_doc: Mapping[str, Any] | None,
    primary_doc: Mapping[str, Any] | None,
    canary_doc: Mapping[str, Any] | None,
    arms: routing.Arms,
    router: routing.TrafficRouter,
) -> None:
    namespace = rollout["metadata"]["namespace"]
    target = spec.target_ref.name
    match action:
        case rollouts.EnsurePrimary(template=template, revision=revision, replicas=replicas):
            await _ensure_arm(api, rollout, target_doc, primary_doc, "primary", template, revision, replicas)
        case rollouts.EnsureCanary(template=template, revision=revision):
            await _ensure_arm(api, rollout, target_doc, canary_doc, "canary", template, revision, None)
        case rollouts.ScalePrimary(replicas=replicas):
            if arms.primary is not None and arms.primary.replicas != replicas:
                await api.patch(
                    kube.deployment_path(namespace, workloads.primary_name(target)), {"spec": {"replicas": replicas}}
                )
        case rollouts.EnsureServices():
            await _ensure_services(api, rollout, spec)
        case rollouts.SetWeight(weight=weight, primary_replicas=primary_replicas):
            await router.set_weight(arms, weight, primary_replicas)
        case rollouts.ScaleTarget(replicas=replicas):
            current = workloads.target_of(target_doc)
            if current is not None and current.replicas != replicas:
                await api.patch(kube.deployment_path(namespace, target), {"spec": {"replicas": replicas}})
        case rollouts.ForgetAnnotation():
            pass  # done after the status patch


async def finalize(api: kube.Client, body: Mapping[str, Any]) -> None:
    """Give the user's Deployment back as it was, then remove everything the operator created.

    The target is scaled back first and must be ready before the primary goes,
    so that deleting a CanaryRollout never leaves the service without pods.
    """
    namespace = body["metadata"]["namespace"]
    status = models.parse_status(body.get("status"))
    logs.bind_rollout(namespace, body["metadata"]["name"], status)
    target = ((body.get("spec") or {}).get("targetRef") or {}).get("name")
    if not target:
        return
    target_doc = await api.get(kube.deployment_path(namespace, target))
    restore = status.target_replicas
    if target_doc is not None and restore is not None:
        if (target_doc["spec"].get("replicas") or 0) != restore:
            await api.patch(kube.deployment_path(namespace, target), {"spec": {"replicas": restore}})
            raise kopf.TemporaryError(f"restored {target} to {restore} replicas; waiting for it", delay=1)
        workload = workloads.workload_of(target_doc)
        if restore > 0 and workload is not None and not workload.rolled_out:
            raise kopf.TemporaryError(f"waiting for {target} to be ready before removing the primary", delay=1)
    removed = []
    for path in (
        kube.deployment_path(namespace, workloads.canary_name(target)),
        kube.deployment_path(namespace, workloads.primary_name(target)),
        kube.service_path(namespace, workloads.canary_name(target)),
        kube.service_path(namespace, workloads.primary_name(target)),
        kube.service_path(namespace, target),
    ):
        if workloads.owned_by(await api.get(path), body) and await api.delete(path):
            removed.append(path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1])
    logs.get().info("finalized", restored_replicas=restore, removed=removed)
