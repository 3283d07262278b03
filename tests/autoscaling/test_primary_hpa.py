"""The primary's HPA and the actions under an autoscaler, as plain data."""

from __future__ import annotations

from typing import Any

from canary_operator import autoscaling, observations, rollouts

ROLLOUT: dict[str, Any] = {"metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}}
USER_HPA: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "shop", "annotations": {"team": "a"}},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 2,
        "maxReplicas": 10,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
    },
}
PRIMARY = observations.Workload(revision="r1", replicas=7, ready_replicas=7)


def test_the_primary_hpa_copies_the_users_spec_aimed_at_the_primary_and_owned_by_the_rollout() -> None:
    hpa = autoscaling.primary_hpa(ROLLOUT, USER_HPA, "web")
    assert hpa["metadata"]["name"] == "web-primary"
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-primary"}
    assert {k: v for k, v in hpa["spec"].items() if k != "scaleTargetRef"} == {
        k: v for k, v in USER_HPA["spec"].items() if k != "scaleTargetRef"
    }
    assert USER_HPA["spec"]["scaleTargetRef"]["name"] == "web", "the user's HPA is not changed"


def test_under_an_autoscaler_the_primary_keeps_its_size_and_the_weight_uses_it() -> None:
    ensure = rollouts.EnsurePrimary({"spec": {}}, "r1", 4)
    assert autoscaling.adapt(ensure, PRIMARY) == rollouts.EnsurePrimary({"spec": {}}, "r1", None)
    weight = rollouts.SetWeight(20, 4)
    assert autoscaling.adapt(weight, PRIMARY) == rollouts.SetWeight(20, 7)
    assert autoscaling.adapt(rollouts.ScaleTarget(0), PRIMARY) == rollouts.ScaleTarget(0)


def test_a_primary_not_created_yet_is_created_at_the_recorded_size() -> None:
    ensure = rollouts.EnsurePrimary({"spec": {}}, "r1", 4)
    assert autoscaling.adapt(ensure, None) == ensure
