"""targetRef.scaleDown: when the user's Deployment gives its pods up to the primary."""

from __future__ import annotations

import copy

import helpers
from helpers import V1, V2, World

from canary_operator import models


def world(scale_down: str) -> World:
    raw = copy.deepcopy(helpers.example_rollout()["spec"])
    raw["targetRef"]["scaleDown"] = scale_down
    raw["analysis"]["interval"] = "10s"
    return World(spec=models.parse_spec(raw), template=V1)


def test_onsuccess_scales_the_deployment_to_zero_once_the_primary_is_ready() -> None:
    w = world("onsuccess")
    w.tick()
    assert w.target_replicas == 9, "not before the primary is ready"
    w.tick()
    assert w.status.phase is models.Phase.STABLE and w.target_replicas == 0


def test_never_keeps_the_deployments_pods_through_a_whole_release() -> None:
    w = world("never")
    w.tick()
    w.tick()
    assert w.status.phase is models.Phase.STABLE and w.target_replicas == 9
    w.template = V2
    w.run_checks(models.Verdict.PASS, until=models.Phase.SUCCEEDED, limit=200)
    assert w.status.phase is models.Phase.SUCCEEDED
    assert w.target_replicas == 9 and w.primary is not None and w.primary.replicas == 9
    assert "Rescaled" not in w.reasons(), "its unchanged replicas are not a rescale"
