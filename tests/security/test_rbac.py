"""Least privilege, proven: the grants the operator really uses, recorded by the emulated API server over a
whole life (a takeover whose Service port is edited midway, a promoted canary and a rolled-back one with
a ``secretRef`` for Prometheus, deletion),
are exactly what the chart grants."""

from __future__ import annotations

import helm_python as helm
import helpers
import pytest
import yaml

from canary_bench import stage as stages
from canary_operator import kube

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prometheus_tools")]

OPERATOR_AGENTS = ("kopf/", kube.USER_AGENT)


def service_port(stage: stages.Stage) -> int | None:
    service = stage.service(stages.NAME)
    return None if service is None else int(service["spec"]["ports"][0]["port"])


def test_the_chart_grants_exactly_what_a_whole_rollout_life_uses() -> None:
    with stages.Stage(rollout=False) as stage:
        assert stage.cluster is not None and stage.prometheus is not None
        # Held mid-takeover, the rollout's Service port is edited: the Services are patched (only a
        # takeover ensures them).
        stage.cluster.hold_rollout(stages.NAMESPACE, "web-primary")
        # A bearer token for Prometheus (which takes any): the Secret is read by name at every check.
        stage.cluster.create(
            kube.secret_path(stages.NAMESPACE, "prom-reader").rsplit("/", 1)[0],
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "prom-reader"}, "data": {"token": "dA=="}},
        )
        manifest = stage.plan.manifest(stage.prometheus.url)
        manifest["spec"]["analysis"]["prometheus"]["secretRef"] = {"name": "prom-reader"}
        stage.apply(manifest)
        stage.wait_for("the Services", lambda: service_port(stage) == 80)
        patched = stage.kubectl(
            "-n", stages.NAMESPACE, "patch", "canaryrollout", stages.NAME, "--type=merge",
            "-p", '{"spec": {"service": {"port": 8080}}}',
        )  # fmt: skip
        assert patched.returncode == 0, patched.stderr
        stage.wait_for("the Services on the new port", lambda: service_port(stage) == 8080)
        stage.cluster.release_rollout(stages.NAMESPACE, "web-primary")
        stage.wait_phase("Stable", timeout=30)
        stage.wait_traffic()
        assert stage.release("example/web:2.0", timeout=90)["phase"] == "Succeeded"
        assert stage.release("example/web:2.0-errors", timeout=90)["phase"] == "RolledBack"
        stage.delete_rollout()
        stage.wait_for("the CanaryRollout to be gone", lambda: stage.rollout() is None, timeout=30)
        used = stage.cluster.grants_used(OPERATOR_AGENTS)
    with helm.Chart.load(helpers.CHART) as chart:
        # The bench's rollouts use the replicas router: the role without the other routers' grants.
        rendered = chart.render(
            {"trafficRouters": [], "autoscalers": False, "peering": {"enabled": False}, "replicas": 1},
            name="canary",
            namespace="canary-system",
        )
    [role] = [
        obj
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for obj in yaml.safe_load_all(text)
        if obj and obj.get("kind") == "ClusterRole"
    ]
    listed = helpers.OPERATOR_GRANTS
    assert used == listed, f"used, not listed: {sorted(used - listed)}; listed, unused: {sorted(listed - used)}"
    grants = helpers.granted(role["rules"])
    assert grants == used, f"missing: {sorted(used - grants)}; excess: {sorted(grants - used)}"
