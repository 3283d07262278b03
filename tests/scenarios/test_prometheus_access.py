"""Prometheus access with the real operator process: the allow-list refuses before any write, defaults just work."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import assert_not_taken_over

from canary_bench import impostors
from canary_bench import stage as stages

pytestmark = pytest.mark.usefixtures("prometheus_tools")


def stalled_reason(status: dict[str, Any]) -> str | None:
    stalled = next((c for c in status.get("conditions") or [] if c["type"] == "Stalled"), None)
    return stalled["reason"] if stalled is not None and stalled["status"] == "True" else None


def ticks(stage: stages.Stage) -> float:
    metrics = stage.operator_metrics()
    return sum(v for (name, labels), v in metrics.items() if name == "canary_operator_reconciles_total")


def test_a_rollout_pointing_outside_the_allow_list_is_stalled_before_anything_is_touched() -> None:
    allowed = {"CANARY_PROMETHEUS_ALLOWED_ADDRESSES": "http://prometheus.monitoring:9090"}
    with impostors.Impostor("html") as elsewhere, stages.Stage(rollout=False, operator_env=allowed) as stage:
        stage.apply(stage.plan.manifest(elsewhere.url))
        status = stage.wait_status(
            "Stalled with PrometheusNotAllowed", lambda s: stalled_reason(s) is not None, posted=True
        )
        assert stalled_reason(status) == "PrometheusNotAllowed"
        assert "is not allowed by the operator (allowed: http://prometheus.monitoring:9090)" in status["message"]
        seen = ticks(stage)
        stage.wait_for("five more ticks", lambda: ticks(stage) >= seen + 5)
        assert elsewhere.requests == 0, "no request reached the refused address"
        assert stage.deployment("web-primary") is None and stage.service("web-primary") is None
        assert_not_taken_over(stage.deployment("web"), 4)
        assert len(stage.events("PrometheusNotAllowed")) == 1, "one Warning Event, not one per tick"


def test_a_rollout_without_prometheus_is_analysed_against_the_operators_default() -> None:
    with stages.Stage(rollout=False) as stage:
        assert stage.prometheus is not None
        stage.kill_operator()
        stage.operator_env["CANARY_PROMETHEUS_ADDRESS"] = stage.prometheus.url
        stage.operator_env["CANARY_PROMETHEUS_ALLOWED_ADDRESSES"] = "http://prometheus.monitoring:9090"
        stage.start_operator()
        manifest = stage.plan.manifest("unused")
        del manifest["spec"]["analysis"]["prometheus"]
        stage.apply(manifest)
        stage.wait_phase("Stable", timeout=30)
        stage.wait_traffic()
        status = stage.release("example/web:2.0", timeout=90)
        assert status["phase"] == "Succeeded"
        assert status["lastCheck"]["verdict"] == "Pass"
