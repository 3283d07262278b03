"""Whose objects these are: checked before every write, so that one tenant's rollout never touches another's.

A CanaryRollout writes two kinds of objects: those it created (its ``<target>-primary`` and
``<target>-canary`` Deployments and the ``<target>``, ``<target>-primary`` and ``<target>-canary``
Services, each with an owner reference to it) and the user's target, which it scales to 0 while it
runs and back on deletion. The target has no owner reference to spare, so the rollout *claims* it
with an annotation holding its uid, written with the target's resourceVersion as a precondition:
of two rollouts claiming one Deployment at once, the API server lets exactly one through.

``conflicts`` is pure (plain dicts in, findings out) and is called before any action of a tick;
any finding means no write at all that tick, only a status condition and an Event.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from canary_operator import models, names, workloads

CLAIM_ANNOTATION = f"{models.GROUP}/claimed-by"
HANDED_OVER_ANNOTATION = f"{models.GROUP}/handed-over"  # on the apex Service given to the user on deletion

OBJECT_CONFLICT = models.Reason.OBJECT_CONFLICT
TARGET_CLAIMED = models.Reason.TARGET_CLAIMED

Doc = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Conflict:
    """Why this rollout must not write: ``reason`` is the condition reason, ``message`` says what to do."""

    reason: models.Reason
    message: str

    def __str__(self) -> str:
        return self.message


def uid_of(rollout: Doc) -> str:
    return str(rollout["metadata"].get("uid") or "")


def claimant(obj: Doc | None) -> str | None:
    """The uid of the rollout that claimed this target, if any."""
    if obj is None:
        return None
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(CLAIM_ANNOTATION)


def _rollout_owners(obj: Doc) -> list[Mapping[str, Any]]:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return [
        ref
        for ref in refs
        if ref.get("kind") == models.KIND and str(ref.get("apiVersion", "")).startswith(models.GROUP)
    ]


def owned_by(obj: Doc | None, rollout: Doc) -> bool:
    """Created by this rollout: an owner reference with its uid."""
    if obj is None:
        return False
    uid = uid_of(rollout)
    return bool(uid) and any(ref.get("uid") == uid for ref in _rollout_owners(obj))


def claimed_by(target: Doc | None, rollout: Doc) -> bool:
    uid = uid_of(rollout)
    return bool(uid) and claimant(target) == uid


def _describe_owner(obj: Doc) -> str:
    owners = _rollout_owners(obj)
    if owners:
        return f"CanaryRollout {owners[0].get('name', '?')}"
    return "another CanaryRollout"


def target_conflicts(rollout: Doc, target: Doc | None) -> list[Conflict]:
    """The target itself: not an arm of a rollout, not claimed by another one."""
    if target is None:
        return []
    name = target["metadata"].get("name", "")
    labels = (target.get("metadata") or {}).get("labels") or {}
    if _rollout_owners(target) or workloads.ROLLOUT_LABEL in labels:  # a label on what the operator creates: an arm
        return [
            Conflict(
                OBJECT_CONFLICT,
                f"Deployment {name} is managed by {_describe_owner(target)} (it is one of its primary or canary"
                " Deployments); target the user's own Deployment instead",
            )
        ]
    holder = claimant(target)
    if holder is not None and holder != uid_of(rollout):
        return [
            Conflict(
                TARGET_CLAIMED,
                f"Deployment {name} is already released by another CanaryRollout (uid {holder});"
                " one Deployment takes one CanaryRollout",
            )
        ]
    return []


def created_conflicts(rollout: Doc, kind: str, objects: Iterable[tuple[str, Doc | None]]) -> list[Conflict]:
    """Objects the rollout creates under fixed names: each must be absent or its own."""
    found = []
    for name, obj in objects:
        if obj is not None and not owned_by(obj, rollout):
            found.append(
                Conflict(
                    OBJECT_CONFLICT,
                    f"{kind} {name} exists and is not managed by this CanaryRollout"
                    f" ({_describe_owner(obj) if _rollout_owners(obj) else 'it belongs to somebody else'});"
                    " remove or rename it, or rename the target",
                )
            )
    return found


def conflicts(
    rollout: Doc,
    target: Doc | None,
    primary: Doc | None,
    canary: Doc | None,
    services: Mapping[str, Doc | None],
) -> list[Conflict]:
    """Everything that forbids this rollout's writes this tick; empty when it may write.

    ``services`` maps the names ``<target>``, ``<target>-primary`` and ``<target>-canary`` to the
    Services found under them (None when absent); a name left out counts as absent (or not checked: the
    reconciler reads the Services only while taking over, when it creates them).
    """
    target_name = ((rollout.get("spec") or {}).get("targetRef") or {}).get("name", "")
    return [
        *target_conflicts(rollout, target),
        *created_conflicts(
            rollout,
            "Deployment",
            ((names.primary(target_name), primary), (names.canary(target_name), canary)),
        ),
        *created_conflicts(
            rollout,
            "Service",
            sorted((name, None if adoptable(found, target_name) else found) for name, found in services.items()),
        ),
    ]


def claim_patch(rollout: Doc, target: Doc) -> dict[str, Any] | None:
    """The merge patch that claims the target, with its resourceVersion as a precondition; None when held."""
    if claimed_by(target, rollout):
        return None
    return {
        "metadata": {
            "resourceVersion": target["metadata"].get("resourceVersion"),
            "annotations": {CLAIM_ANNOTATION: uid_of(rollout)},
        }
    }


def handover_patch(rollout: Doc, service: Doc | None, target: Doc | None) -> dict[str, Any] | None:
    """The merge patch that gives the apex Service (named after the target) to the user on deletion, selecting
    the target's pods: a route, a mesh host or a client that names it keeps working once the arms are gone. None
    when it is not this rollout's, or the target is gone, or its selector cannot be a Service's (matchExpressions).

    The owner reference goes (or the garbage collector would delete it with the rollout), and the operator's
    labels; the annotation ``canary.dev/handed-over`` lets a CanaryRollout created again for the same target take
    it back (``adoptable``), where a Service of anyone else's is an ObjectConflict.
    """
    if service is None or target is None or not owned_by(service, rollout):
        return None
    selector = (target.get("spec") or {}).get("selector") or {}
    wanted = selector.get("matchLabels") or {}
    if not wanted or selector.get("matchExpressions"):
        return None
    meta = service.get("metadata") or {}
    ours = {workloads.ROLLOUT_LABEL, workloads.ARM_LABEL, *workloads.MANAGED_BY}
    return {
        "metadata": {
            "resourceVersion": meta.get("resourceVersion"),
            "ownerReferences": None,
            "labels": {key: None for key in meta.get("labels") or {} if key in ours},
            "annotations": {HANDED_OVER_ANNOTATION: target["metadata"]["name"]},
        },
        "spec": {"selector": _selector_becomes(service, wanted)},
    }


def adoptable(obj: Doc | None, target_name: str) -> bool:
    """A Service a deleted CanaryRollout handed over for this target, owned by nobody since: taken back."""
    if obj is None or (obj.get("metadata") or {}).get("ownerReferences"):
        return False
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(HANDED_OVER_ANNOTATION) == target_name


def adoption_patch(service: Doc, desired: Doc) -> dict[str, Any]:
    """The merge patch that takes an ``adoptable`` Service back as ``desired`` (``workloads.services``), guarded
    by the resourceVersion read: the owner reference, the operator's labels, its selector and ports."""
    meta = desired["metadata"]
    return {
        "metadata": {
            "resourceVersion": (service.get("metadata") or {}).get("resourceVersion"),
            "ownerReferences": meta["ownerReferences"],
            "labels": meta["labels"],
            "annotations": {HANDED_OVER_ANNOTATION: None},
        },
        "spec": {
            "selector": _selector_becomes(service, desired["spec"]["selector"]),
            "ports": desired["spec"]["ports"],
        },
    }


def _selector_becomes(service: Doc, wanted: Mapping[str, str]) -> dict[str, Any]:
    """The selector's value in a merge patch that makes it exactly ``wanted``: a merge patch merges maps, so the
    keys it had are removed one by one."""
    return {**{key: None for key in (service.get("spec") or {}).get("selector") or {}}, **wanted}


def release_patch(rollout: Doc, target: Doc) -> dict[str, Any] | None:
    """The merge patch that gives the claim up on deletion; None when this rollout does not hold it."""
    if not claimed_by(target, rollout):
        return None
    return {
        "metadata": {
            "resourceVersion": target["metadata"].get("resourceVersion"),
            "annotations": {CLAIM_ANNOTATION: None},
        }
    }


def may_restore(rollout: Doc, target: Doc | None) -> bool:
    """Deleting this rollout may scale the target back only if no other rollout holds it.

    Unclaimed counts as this rollout's: one that took the target over before claims existed (an upgrade)
    must still give it back; a second rollout refused on a claimed target never recorded replicas anyway.
    """
    if target is None or _rollout_owners(target):
        return False
    return claimant(target) in (None, uid_of(rollout))
