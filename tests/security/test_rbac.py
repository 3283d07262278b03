"""Least privilege, proven: the grants the operator really uses, recorded by the emulated API server over a
whole life (takeover, a promoted canary, a rolled-back one, deletion), are exactly what the chart grants."""

from __future__ import annotations

import helm_python as helm
import helpers
import pytest
import yaml

from canary_bench import stage as stages
from canary_operator import kube

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prometheus_tools")]

OPERATOR_AGENTS = ("kopf/", kube.USER_AGENT)
USED = helpers.OPERATOR_GRANTS


def test_the_chart_grants_exactly_what_a_whole_rollout_life_uses() -> None:
    with stages.Stage() as stage:
        stage.wait_phase("Stable", timeout=30)
        stage.wait_traffic()
        assert stage.release("example/web:2.0", timeout=90)["phase"] == "Succeeded"
        assert stage.release("example/web:2.0-errors", timeout=90)["phase"] == "RolledBack"
        patched = stage.kubectl(
            "-n",
            stages.NAMESPACE,
            "patch",
            "canaryrollout",
            stages.NAME,
            "--type=merge",
            "-p",
            '{"spec": {"service": {"port": 8080}}}',
        )
        assert patched.returncode == 0, patched.stderr
        assert stage.release("example/web:3.0", timeout=90)["phase"] == "Succeeded"  # Services are ensured again
        stage.wait_for(
            "the Services on the new port",
            lambda: (stage.service(stages.NAME) or {}).get("spec", {}).get("ports", [{}])[0].get("port") == 8080,
        )
        stage.delete_rollout()
        stage.wait_for("the CanaryRollout to be gone", lambda: stage.rollout() is None, timeout=30)
        assert stage.cluster is not None
        used = stage.cluster.grants_used(OPERATOR_AGENTS)
    with helm.Chart.load(helpers.CHART) as chart:
        rendered = chart.render(None, name="canary", namespace="canary-system")
    [role] = [
        obj
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for obj in yaml.safe_load_all(text)
        if obj and obj.get("kind") == "ClusterRole"
    ]
    assert used == USED, f"used but not in USED: {sorted(used - USED)}; listed but unused: {sorted(USED - used)}"
    grants = helpers.granted(role["rules"])
    assert grants == used, f"missing: {sorted(used - grants)}; excess: {sorted(grants - used)}"
