"""The operator observed: its /metrics during a rollback, its release summary, its logs by release id."""

from __future__ import annotations

import re

import pytest

from canary_bench import stage as stages

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prometheus_tools")]

ROLLOUT = (("namespace", "shop"), ("rollout", "web"))


def value(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    wanted = tuple(sorted({**dict(ROLLOUT), **labels}.items()))
    return metrics.get((name, wanted), 0.0)


def test_the_operators_metrics_follow_a_rollback_and_its_logs_tell_the_release_story() -> None:
    # Interval checks only, two failures in a row: the continuous test (or one decisive check) would roll
    # this canary back before the metrics of a rollout in progress can be looked at.
    with stages.Stage(plan=stages.Plan(continuous=False, fail_fast=False)) as stage:
        stage.wait_phase("Stable", timeout=30)
        stage.wait_traffic()
        assert stage.operator_http("/healthz")[0] == 200
        assert stage.operator_http("/readyz")[0] == 200

        stage.set_image("example/web:2.0-errors")
        stage.wait_status("the first check", lambda status: status.get("lastCheck") is not None)

        def checked() -> int:  # the metrics follow the recorded status, a moment after it is written
            return int(
                sum(
                    v
                    for (name, labels), v in stage.operator_metrics().items()
                    if name == "canary_operator_checks_total" and ROLLOUT[1] in labels
                )
            )

        assert stage.wait_for("both metrics checked", lambda: checked() >= 2, timeout=10)
        middle = stage.operator_metrics()
        assert value(middle, "canary_operator_rollout_phase", phase="Progressing") == 1
        assert value(middle, "canary_operator_rollout_weight_percent") == 20
        assert value(middle, "canary_operator_releases_total", outcome="rolled_back") == 0
        assert middle[("canary_operator_reconciles_total", (("result", "ok"),))] > 0

        status = stage.wait_phase("RolledBack", timeout=60)
        stage.wait_status(
            "traffic restored", lambda s: s.get("releases", [{}])[-1].get("restoredAt") is not None, timeout=30
        )
        end = stage.operator_metrics()
        assert value(end, "canary_operator_rollout_phase", phase="RolledBack") == 1
        assert value(end, "canary_operator_rollout_phase", phase="Progressing") == 0
        assert value(end, "canary_operator_rollout_weight_percent") == 0
        assert value(end, "canary_operator_releases_total", outcome="rolled_back") == 1
        assert value(end, "canary_operator_time_to_detect_seconds_count") == 1
        assert value(end, "canary_operator_time_to_restore_seconds_count") == 1
        assert end[("canary_operator_provider_query_duration_seconds_count", ())] > 0
        failing = value(end, "canary_operator_checks_total", metric="error-rate", verdict="Fail")
        assert failing >= 2

        # Bounded label sets: no revision hash, release id or PromQL in any label value.
        revision = status["canaryRevision"]
        for _, labels in end:
            for _, label_value in labels:
                assert revision not in label_value and "{" not in label_value

        # The release summary in the status: outcome and durations.
        release = stage.status()["releases"][-1]
        assert release["outcome"] == "rolled_back" and release["revision"] == revision
        assert 0 < release["timeToDetectSeconds"] < 30
        assert 0 < release["timeToRestoreSeconds"] < release["timeToDetectSeconds"] + 10

        # One filter on the release id tells that release's story, and nothing else.
        release_id = status["releaseId"]
        story = [line for line in stage.log_lines() if line.get("release") == release_id]
        told = [line["event"] for line in story]
        assert told[0] == "CanaryStarted"
        assert "CheckFailed" in told or told.count("check") >= 2
        assert "RolledBack" in told and "traffic restored" in told
        assert all(line["revision"] == revision and line["rollout"] == "web" for line in story)
        assert "Initialized" not in told, "the takeover belongs to no release"
        # Every Event about the release names it too.
        events = [e for e in stage.events() if release_id in e["message"]]
        assert {e["reason"] for e in events} >= {"CanaryStarted", "RolledBack"}
        assert re.search(r"\[release web-[0-9a-f]{10}-\d{8}T\d{6}Z\]$", events[0]["message"])
