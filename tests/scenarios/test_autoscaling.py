"""A Deployment with an HPA (``autoscalerRef``): the primary gets an equivalent HPA, the canary follows its size."""

from __future__ import annotations

import pytest

from canary_bench import stage as stages

pytestmark = [pytest.mark.usefixtures("prometheus_tools"), pytest.mark.slow]

HPA_SPEC = {
    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
    "minReplicas": 2,
    "maxReplicas": 12,
    "metrics": [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ],
}


def test_the_primary_gets_the_users_hpa_and_the_canary_is_sized_from_the_primarys_actual_replicas() -> None:
    plan = stages.Plan(steps=[{"setWeight": 20}, {"pause": {}}])  # held at 20% until promoted
    with stages.Stage(plan=plan, rollout=False) as stage:
        assert stage.cluster is not None and stage.prometheus is not None
        cluster = stage.cluster
        hpas = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers"
        stage.cluster.create(hpas, {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                                    "metadata": {"name": "web", "namespace": "shop"}, "spec": HPA_SPEC})  # fmt: skip
        manifest = plan.manifest(stage.prometheus.url)
        manifest["spec"]["autoscalerRef"] = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "name": "web",
        }
        stage.apply(manifest)
        stage.wait_phase("Stable", timeout=30)

        primary_hpa = stage.wait_for("the primary's HPA", lambda: cluster.get(f"{hpas}/web-primary"))
        assert primary_hpa["spec"] == {
            **HPA_SPEC,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-primary"},
        }
        assert primary_hpa["metadata"]["ownerReferences"][0]["kind"] == "CanaryRollout"

        # The HPA controller scales the primary from 4 to 8: the operator leaves it there.
        stage.cluster.patch("/apis/apps/v1/namespaces/shop/deployments/web-primary", {"spec": {"replicas": 8}})
        stage.set_image("example/web:2.0")
        stage.wait_status("the canary at 20%", lambda status: status.get("phase") == "Progressing")
        canary = stage.wait_for(
            "the canary sized from 8 primary pods",
            lambda: (d := stage.deployment("web-canary")) and d["spec"]["replicas"] == 2 and d,
        )
        assert canary["spec"]["replicas"] == 2, "20% next to 8 primary pods is 2 canary pods (1 next to the planned 4)"
        primary = stage.deployment("web-primary")
        assert primary is not None and primary["spec"]["replicas"] == 8, "the autoscaler's size stands"
