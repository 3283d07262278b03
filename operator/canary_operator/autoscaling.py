"""The user's HorizontalPodAutoscaler, carried over to the primary (``spec.autoscalerRef``, as Flagger does).

The user's HPA targets the user's Deployment, which the operator keeps at 0 replicas; an HPA
whose target has 0 replicas stops scaling, so it does not fight the operator. The primary gets
an equivalent HPA (``<target>-primary``: the same bounds, metrics and behaviour, its
``scaleTargetRef`` on the primary), owned by the CanaryRollout like the other objects. From then
on the HPA sizes the primary: the operator sets the primary's replicas only when it creates it,
and sizes the canary from the primary's *actual* replicas, so the weight follows the autoscaler.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from canary_operator import kube, models, names, observations, ownership, workloads


def hpa_path(namespace: str, name: str | None = None) -> str:
    return kube.object_path("/apis/autoscaling/v2", "horizontalpodautoscalers", namespace, name)


def primary_hpa(rollout: Mapping[str, Any], user_hpa: Mapping[str, Any], target: str) -> dict[str, Any]:
    """The primary's HPA: the user's spec, aimed at the primary Deployment."""
    spec = copy.deepcopy(dict(user_hpa.get("spec") or {}))
    spec["scaleTargetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": names.primary(target)}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": names.primary(target),
            "namespace": rollout["metadata"]["namespace"],
            "labels": {workloads.ROLLOUT_LABEL: rollout["metadata"]["name"], **workloads.MANAGED_BY},
            "ownerReferences": [workloads.owner_reference(rollout)],
        },
        "spec": spec,
    }


def hpa_replicas(spec: models.CanaryRolloutSpec, primary: observations.Workload | None) -> int | None:
    """The primary's actual size when its HPA sets it (``autoscalerRef``, the primary there); None otherwise.

    Given to the state machine (``Observations.hpa_replicas``): its actions then keep the primary's size and
    weigh the canary against it. A primary not created yet is created at the planned size; the HPA takes over.
    """
    return primary.replicas if spec.autoscaler_ref is not None and primary is not None else None


def primary_replicas(spec: models.CanaryRolloutSpec, primary: observations.Workload | None, planned: int) -> int:
    """The primary's size the weight math uses: the actual one under an HPA, the planned one otherwise."""
    actual = hpa_replicas(spec, primary)
    return planned if actual is None else actual


@dataclasses.dataclass(frozen=True)
class Observed:
    """The user's HPA and the primary's, read once per tick; ``problem`` when the first cannot be carried over."""

    user: Mapping[str, Any] | None
    primary: Mapping[str, Any] | None
    problem: tuple[models.Reason, str] | None = None


async def observe(api: kube.Client, rollout: Mapping[str, Any], spec: models.CanaryRolloutSpec) -> Observed | None:
    """Both HPAs (None without ``autoscalerRef``), and why the user's cannot be carried over, if it cannot."""
    ref = spec.autoscaler_ref
    if ref is None:
        return None
    namespace = rollout["metadata"]["namespace"]
    name = names.primary(spec.target_ref.name)
    try:
        user, primary = await asyncio.gather(api.get(hpa_path(namespace, ref.name)), api.get(hpa_path(namespace, name)))
    except (kube.ApiError, kube.UnreachableError) as exc:
        # Said, not raised: a tick that fails here would decide nothing, not even a rollback.
        problem = (
            models.Reason.AUTOSCALER_UNREADABLE,
            f"cannot read HorizontalPodAutoscaler {ref.name} or {name}: {exc}; the primary's HPA is left as it is",
        )
        return Observed(None, None, problem)
    if user is None:
        problem = (
            models.Reason.AUTOSCALER_NOT_FOUND,
            f"HorizontalPodAutoscaler {ref.name} (spec.autoscalerRef) not found: the primary is not autoscaled;"
            f" its size is the operator's, from the target's replicas",
        )
        return Observed(None, primary, problem)
    if primary is not None and not ownership.owned_by(primary, rollout):
        problem = (
            models.Reason.OBJECT_CONFLICT,
            f"HorizontalPodAutoscaler {name} exists and is not managed by this CanaryRollout: the primary is not"
            f" autoscaled; delete or rename it",
        )
        return Observed(user, primary, problem)
    return Observed(user, primary)


async def ensure_primary_hpa(
    api: kube.Client, rollout: Mapping[str, Any], spec: models.CanaryRolloutSpec, observed: Observed
) -> None:
    """Create or update the primary's HPA from the user's, as observed this tick (nothing when it cannot be)."""
    if observed.user is None or observed.problem is not None:
        return
    namespace = rollout["metadata"]["namespace"]
    desired = primary_hpa(rollout, observed.user, spec.target_ref.name)
    existing = observed.primary
    if existing is None:
        await api.create(hpa_path(namespace), desired)
    elif existing.get("spec") != desired["spec"]:  # ours: observe() found no conflict
        await api.patch(hpa_path(namespace, desired["metadata"]["name"]), {"spec": desired["spec"]})
