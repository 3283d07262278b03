"""Whose objects these are, decided from plain dicts: any finding means no write at all that tick."""

from __future__ import annotations

from typing import Any

from canary_operator import ownership


def rollout(name: str = "web", uid: str = "uid-a", target: str = "web") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "uid": uid},
        "spec": {"targetRef": {"name": target}},
    }


def obj(name: str, owner_uid: str | None = None, owner: str = "web", **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "shop", "resourceVersion": "7"}
    if owner_uid:
        meta["ownerReferences"] = [
            {"apiVersion": "canary.dev/v1alpha1", "kind": "CanaryRollout", "name": owner, "uid": owner_uid}
        ]
    if annotations:
        meta["annotations"] = {k.replace("_", "/"): v for k, v in annotations.items()}
    return {"metadata": meta}


def claimed(name: str, uid: str) -> dict[str, Any]:
    target = obj(name)
    target["metadata"]["annotations"] = {ownership.CLAIM_ANNOTATION: uid}
    return target


def test_an_unclaimed_target_with_nothing_in_the_way_may_be_written_and_is_claimed_first() -> None:
    mine = rollout()
    assert ownership.conflicts(mine, obj("web"), None, None, {}) == []
    assert ownership.claim_patch(mine, obj("web")) == {
        "metadata": {"resourceVersion": "7", "annotations": {"canary.dev/claimed-by": "uid-a"}}
    }


def test_the_rollouts_own_objects_are_no_conflict_and_its_claim_is_not_rewritten() -> None:
    mine = rollout()
    services = {n: obj(n, "uid-a") for n in ("web", "web-primary", "web-canary")}
    target = claimed("web", "uid-a")
    assert ownership.conflicts(mine, target, obj("web-primary", "uid-a"), obj("web-canary", "uid-a"), services) == []
    assert ownership.claim_patch(mine, target) is None


def test_a_second_rollout_on_a_claimed_deployment_is_refused_as_target_claimed() -> None:
    found = ownership.conflicts(rollout("web2", "uid-b"), claimed("web", "uid-a"), None, None, {})
    assert [c.reason for c in found] == ["TargetClaimed"]
    assert "uid-a" in found[0].message and "one Deployment takes one CanaryRollout" in found[0].message


def test_a_target_that_is_another_rollouts_primary_is_refused() -> None:
    other = rollout("evil", "uid-b", target="web-primary")
    found = ownership.conflicts(other, obj("web-primary", "uid-a", owner="web"), None, None, {})
    assert [c.reason for c in found] == ["ObjectConflict"]
    assert "CanaryRollout web" in found[0].message


def test_a_target_labelled_as_an_arm_is_refused_even_without_its_owner_reference() -> None:
    arm = obj("web-canary")
    arm["metadata"]["labels"] = {"canary.dev/rollout": "web"}
    assert [c.reason for c in ownership.target_conflicts(rollout(target="web-canary"), arm)] == ["ObjectConflict"]


def test_foreign_deployments_and_services_under_the_derived_names_are_each_reported() -> None:
    found = ownership.conflicts(
        rollout(),
        obj("web"),
        obj("web-primary"),
        obj("web-canary", "uid-z", owner="other"),
        {"web": obj("web"), "web-primary": None, "web-canary": obj("web-canary")},
    )
    assert [c.reason for c in found] == ["ObjectConflict"] * 4
    text = " | ".join(c.message for c in found)
    for what in ("Deployment web-primary", "Deployment web-canary", "Service web ", "Service web-canary"):
        assert what in text
    assert "CanaryRollout other" in text


def test_deletion_restores_a_target_no_other_rollout_holds() -> None:
    mine = rollout()
    assert ownership.may_restore(mine, claimed("web", "uid-a"))
    assert ownership.may_restore(mine, obj("web")), "taken over before claims existed: still given back"
    assert not ownership.may_restore(mine, claimed("web", "uid-b"))
    assert not ownership.may_restore(mine, obj("web-primary", "uid-b", owner="other"))
    assert not ownership.may_restore(mine, None)
    assert ownership.release_patch(mine, claimed("web", "uid-a")) == {
        "metadata": {"resourceVersion": "7", "annotations": {"canary.dev/claimed-by": None}}
    }
    assert ownership.release_patch(mine, claimed("web", "uid-b")) is None


def test_a_rollout_without_a_uid_owns_and_claims_nothing() -> None:
    nameless = {"metadata": {"name": "web", "namespace": "shop"}, "spec": {"targetRef": {"name": "web"}}}
    assert not ownership.owned_by(obj("web-primary", ""), nameless)
    assert not ownership.claimed_by(claimed("web", ""), nameless)
