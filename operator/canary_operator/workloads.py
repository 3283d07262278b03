"""The objects the operator owns, as manifests, and how to read the ones it observes.

For a CanaryRollout ``web`` releasing Deployment ``web``:
- ``web-primary`` (Deployment): the last promoted pod template;
- ``web-canary`` (Deployment): the candidate, 0 replicas when idle;
- ``web`` (Service, apex): selects the pods of both, so traffic follows their replica ratio (the primary's
  alone behind a gateway, ingress or mesh host that splits traffic itself, see ``services``);
- ``web-primary`` and ``web-canary`` (Services): one arm each.

Pods of the two arms carry the user's labels plus ``canary.dev/rollout`` and
``canary.dev/arm``; the selectors use only the operator's labels, so the user's
own (scaled-to-zero) Deployment never adopts or competes for them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from canary_operator import models, names, observations

ROLLOUT_LABEL = "canary.dev/rollout"
ARM_LABEL = "canary.dev/arm"
REVISION_ANNOTATION = "canary.dev/revision"
MANAGED_BY = {"app.kubernetes.io/managed-by": "canary-operator"}

# Fields of the target's Deployment spec copied to both arms (everything but replicas, selector, template).
_COPIED_SPEC_FIELDS = ("strategy", "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds")


def revision_of(template: Mapping[str, Any]) -> str:
    """A short, stable hash of a pod template: the identity of a revision."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def owner_reference(rollout: Mapping[str, Any]) -> dict[str, Any]:
    meta = rollout["metadata"]
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _labels(rollout_name: str, arm: str | None) -> dict[str, str]:
    labels = {ROLLOUT_LABEL: rollout_name}
    if arm is not None:
        labels[ARM_LABEL] = arm
    return labels


def arm_deployment(
    rollout: Mapping[str, Any],
    target: Mapping[str, Any],
    arm: str,
    template: Mapping[str, Any],
    revision: str,
    replicas: int,
) -> dict[str, Any]:
    """The Deployment of one arm (``primary`` or ``canary``) running ``template``."""
    rollout_name = rollout["metadata"]["name"]
    target_name = target["metadata"]["name"]
    selector = _labels(rollout_name, arm)
    pod_template = copy.deepcopy(dict(template))
    pod_meta = pod_template.setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **selector}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": selector},
        "template": pod_template,
    }
    for field in _COPIED_SPEC_FIELDS:
        if field in target.get("spec", {}):
            spec[field] = copy.deepcopy(target["spec"][field])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": names.primary(target_name) if arm == "primary" else names.canary(target_name),
            "namespace": rollout["metadata"]["namespace"],
            "labels": {**selector, **MANAGED_BY},
            "annotations": {REVISION_ANNOTATION: revision},
            "ownerReferences": [owner_reference(rollout)],
        },
        "spec": spec,
    }


def services_digest(rollout: Mapping[str, Any], spec: models.CanaryRolloutSpec) -> str:
    """What the Services' specs (ports and selectors) come to, short: they are made again when it changes."""
    specs = [desired["spec"] for desired in services(rollout, spec)]
    return hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()[:12]


def services(rollout: Mapping[str, Any], spec: models.CanaryRolloutSpec) -> list[dict[str, Any]]:
    """The apex Service (both arms) and one Service per arm."""
    rollout_name = rollout["metadata"]["name"]
    target_name = spec.target_ref.name
    port = {
        "name": "http",
        "port": spec.service.port,
        "targetPort": spec.service.target_port or spec.service.port,
        "protocol": "TCP",
    }
    result = []
    routing = spec.traffic_routing
    # The apex selects both arms where its endpoints are the split (replicas) or are split further by a
    # mesh (Istio subsets); behind a gateway or ingress that splits itself, it must be the primary alone.
    apex_arm = None if routing.replicas is not None or (routing.istio and routing.istio.destination_rule) else "primary"
    for name, arm in (
        (names.apex(target_name), apex_arm),
        (names.primary(target_name), "primary"),
        (names.canary(target_name), "canary"),
    ):
        result.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "namespace": rollout["metadata"]["namespace"],
                    "labels": {**_labels(rollout_name, None if name == target_name else arm), **MANAGED_BY},
                    "ownerReferences": [owner_reference(rollout)],
                },
                "spec": {"selector": _labels(rollout_name, arm), "ports": [port]},
            }
        )
    return result


def target_of(deployment: Mapping[str, Any] | None) -> observations.Target | None:
    if deployment is None:
        return None
    spec = deployment.get("spec", {})
    template = spec.get("template", {})
    replicas = spec.get("replicas")
    return observations.Target(
        revision=revision_of(template), template=template, replicas=1 if replicas is None else int(replicas)
    )


def workload_of(deployment: Mapping[str, Any] | None) -> observations.Workload | None:
    if deployment is None:
        return None
    meta = deployment.get("metadata", {})
    spec = deployment.get("spec", {})
    status = deployment.get("status") or {}
    replicas = spec.get("replicas")
    return observations.Workload(
        revision=(meta.get("annotations") or {}).get(REVISION_ANNOTATION),
        replicas=1 if replicas is None else int(replicas),
        ready_replicas=int(status.get("readyReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        generation=int(meta.get("generation") or 1),
        observed_generation=int(status.get("observedGeneration") or 0),
    )
