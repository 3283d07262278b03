"""The primary's HPA and the actions under an autoscaler, as plain data."""

from __future__ import annotations

from typing import Any

import helpers

from canary_operator import autoscaling, models, observations

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


def test_under_an_autoscaler_the_state_machine_is_told_the_primarys_actual_size() -> None:
    spec = helpers.example_spec().model_copy(update={"autoscaler_ref": models.AutoscalerRef(name="web")})
    assert autoscaling.hpa_replicas(spec, PRIMARY) == 7
    assert autoscaling.primary_replicas(spec, PRIMARY, 4) == 7


def test_a_primary_not_created_yet_or_no_autoscaler_leaves_the_planned_size() -> None:
    autoscaled = helpers.example_spec().model_copy(update={"autoscaler_ref": models.AutoscalerRef(name="web")})
    assert autoscaling.hpa_replicas(autoscaled, None) is None, "created at the planned size; the HPA takes over"
    assert autoscaling.hpa_replicas(helpers.example_spec(), PRIMARY) is None
    assert autoscaling.primary_replicas(helpers.example_spec(), PRIMARY, 4) == 4
