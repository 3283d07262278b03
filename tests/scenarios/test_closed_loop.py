"""Closed-loop scenarios: the real operator, real Prometheus, simulated traffic, emulated cluster.

Each test is one story a user would live through, told with kubectl and read
back from the CanaryRollout's status and Events. Traffic follows the replica
ratio the operator sets; the canary's behaviour follows its image (see
``canary_bench.traffic.DEFAULT_IMAGES``). Waits poll for a state with a deadline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from helpers import assert_not_taken_over

from canary_bench import stage as stages

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prometheus_tools")]


def image_of(deployment: dict[str, Any] | None) -> str:
    assert deployment is not None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def replicas(stage: stages.Stage, name: str) -> int:
    deployment = stage.deployment(name)
    assert deployment is not None, f"Deployment {name}"
    return int(deployment["spec"]["replicas"])


def reasons(stage: stages.Stage) -> list[str]:
    return [e["reason"] for e in stage.events()]


def ready(stage: stages.Stage) -> None:
    stage.wait_phase("Stable", timeout=30)
    stage.wait_traffic()


@pytest.fixture
def stage() -> Iterator[stages.Stage]:
    with stages.Stage() as started:
        ready(started)
        yield started


def test_the_operator_takes_over_web_without_losing_it(stage: stages.Stage) -> None:
    web = stage.deployment("web")
    assert web is not None and web["spec"]["replicas"] == 0
    primary = stage.deployment("web-primary")
    assert primary is not None and primary["spec"]["replicas"] == 4
    assert image_of(primary) == stages.STABLE_IMAGE
    canary = stage.deployment("web-canary")
    assert canary is not None and canary["spec"]["replicas"] == 0
    for name in ("web", "web-primary", "web-canary"):
        assert stage.service(name) is not None, f"Service {name}"
    assert stage.status()["targetReplicas"] == 4
    ready_condition = next(c for c in stage.status()["conditions"] if c["type"] == "Ready")
    assert ready_condition["status"] == "True"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ready_condition["lastTransitionTime"])

    listed = stage.kubectl("get", "canaryrollouts", "-n", "shop").stdout.splitlines()
    assert listed[0].split() == ["NAME", "PHASE", "STEP", "WEIGHT", "LAST", "VERDICT", "AGE"]
    assert listed[1].split()[:2] == ["web", "Stable"]
    described = stage.kubectl("describe", "canaryrollout", "web", "-n", "shop").stdout
    assert "Type:                  Ready" in described
    assert re.search(r"Normal\s+Initialized\s+\S+\s+canary-operator\s+web-primary ready with 4 replicas", described)


def test_a_healthy_canary_is_promoted(stage: stages.Stage) -> None:
    stage.set_image("example/web:2.0")
    status = stage.wait_phase("Succeeded", timeout=90)
    assert image_of(stage.deployment("web-primary")) == "example/web:2.0"
    assert status["stableRevision"] == status["canaryRevision"]
    seen = reasons(stage)
    assert seen.count("StepAdvanced") == 4 and seen.count("Promoted") == 1
    last = status["lastCheck"]
    assert last["verdict"] == "Pass"
    error_rate = next(m for m in last["metrics"] if m["name"] == "error-rate")
    assert error_rate["canaryRequests"] >= 20 and error_rate["canary"] < 1
    stage.wait_for("the canary scaled to 0", lambda: replicas(stage, "web-canary") == 0)
    stage.wait_for("weight 0 reported", lambda: stage.status().get("weight") == 0)
    assert stage.load is not None
    canary_pods = [t for t in stage.load.tallies().values() if t.pod.startswith("web-canary-")]
    assert canary_pods and canary_pods[0].requests > 0, "the canary really served traffic"


def test_a_canary_answering_5_percent_errors_is_rolled_back(stage: stages.Stage) -> None:
    stage.set_image("example/web:2.0-errors")
    status = stage.wait_phase("RolledBack", timeout=60)
    assert image_of(stage.deployment("web-primary")) == stages.STABLE_IMAGE
    assert status["rejectedRevision"] == status["canaryRevision"]
    rollback = stage.events("RolledBack")
    assert len(rollback) == 1 and rollback[0]["type"] == "Warning"
    assert "error-rate" in rollback[0]["message"] and "> max 1%" in rollback[0]["message"]
    # A check failed it, or the continuous test between checks did (its evidence says which metric), maybe
    # before the first check.
    checked = [m for m in (status.get("lastCheck") or {}).get("metrics", []) if m["name"] == "error-rate"]
    evidence = [e for e in (status.get("evidence") or {}).get("metrics", []) if e["verdict"] == "Fail"]
    assert [m["verdict"] for m in checked] == ["Fail"] or [e["metric"] for e in evidence] == ["error-rate"]
    found = checked[0]["canary"] if checked else 100 * evidence[0]["canaryBad"] / evidence[0]["canaryRequests"]
    assert 1 < found < 15
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "RolledBack")
    stage.wait_for("the canary scaled to 0", lambda: replicas(stage, "web-canary") == 0)
    stage.wait_for("weight 0 reported", lambda: stage.status().get("weight") == 0)
    assert stage.status()["phase"] == "RolledBack", "the rejected revision is not retried"
    assert reasons(stage).count("CanaryStarted") == 1


def test_a_canary_with_a_p99_of_800ms_is_rolled_back(stage: stages.Stage) -> None:
    stage.set_image("example/web:2.0-slow")
    status = stage.wait_phase("RolledBack", timeout=60)
    checked = (status.get("lastCheck") or {}).get("metrics", [])
    failing = [m["name"] for m in checked if m["verdict"] == "Fail"]
    evidence = [e["metric"] for e in (status.get("evidence") or {}).get("metrics", []) if e["verdict"] == "Fail"]
    assert (failing or evidence) == ["latency-p99"], "a check or the continuous test between checks"
    assert all(m["canary"] > 500 for m in checked if m["name"] == "latency-p99" and m["verdict"] == "Fail")
    assert "latency-p99" in stage.events("RolledBack")[0]["message"]


def test_a_canary_getting_0_2_requests_per_second_is_held_and_never_promoted() -> None:
    # 1 req/s in all; at the first step (20%) the canary gets 0.2 req/s: 0.4 requests per 2 s check.
    with stages.Stage(rate=1.0) as stage:
        stage.wait_phase("Stable", timeout=30)
        stage.set_image("example/web:2.0")
        status = stage.wait_phase("Paused", timeout=60)
        stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", "InsufficientTraffic")
        assert "need 20" in status["lastCheck"]["reason"]
        threshold = stage.plan.inconclusive_threshold
        status = stage.wait_status(
            "more inconclusive checks", lambda status: status.get("inconclusiveChecks", 0) >= threshold + 3
        )
        assert status["phase"] == "Paused" and status["currentStepIndex"] == 0
        assert "Promoted" not in reasons(stage) and "RolledBack" not in reasons(stage)


def test_prometheus_stopped_mid_rollout_holds_the_rollout_until_it_is_back(stage: stages.Stage) -> None:
    stage.set_image("example/web:2.0")
    stage.wait_status("step 2", lambda status: status.get("currentStepIndex", 0) >= 1)
    assert stage.prometheus is not None
    stage.prometheus.stop()
    status = stage.wait_phase("Paused", timeout=30)
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "PrometheusUnreachable"
    threshold = stage.plan.inconclusive_threshold
    status = stage.wait_status(
        "more unreachable checks", lambda status: status.get("inconclusiveChecks", 0) >= threshold + 2
    )
    assert status["phase"] == "Paused", "an unreachable Prometheus never counts as a pass"
    assert "Promoted" not in reasons(stage)
    stage.prometheus.start()
    stage.wait_phase("Succeeded", timeout=90)
    assert "Resumed" in reasons(stage)


def test_the_operator_killed_mid_step_resumes_and_promotes_exactly_once(stage: stages.Stage) -> None:
    stage.set_image("example/web:2.0")
    stage.wait_status("step 2", lambda status: status.get("currentStepIndex", 0) >= 1)
    stage.kill_operator()
    step = stage.status()["currentStepIndex"]
    stage.start_operator()
    stage.wait_phase("Succeeded", timeout=90)
    assert reasons(stage).count("Promoted") == 1
    assert reasons(stage).count("CanaryStarted") == 1, "the release was resumed, not restarted"
    assert step >= 1
    primary = stage.deployment("web-primary")
    assert primary is not None and primary["metadata"]["generation"] == 2, "created once, promoted once"


def test_a_newer_revision_mid_rollout_restarts_the_analysis_for_it(stage: stages.Stage) -> None:
    stage.set_image("example/web:2.0")
    first = stage.wait_status("step 2", lambda status: status.get("currentStepIndex", 0) >= 1)
    stage.set_image("example/web:3.0")
    status = stage.wait_phase("Succeeded", timeout=90)
    assert status["canaryRevision"] != first["canaryRevision"]
    assert image_of(stage.deployment("web-primary")) == "example/web:3.0"
    assert "CanarySuperseded" in reasons(stage)
    assert reasons(stage).count("Promoted") == 1


def test_deleting_the_rollout_mid_rollout_restores_web_and_removes_what_the_operator_made(
    stage: stages.Stage,
) -> None:
    stage.set_image("example/web:2.0")
    stage.wait_status("step 2", lambda status: status.get("currentStepIndex", 0) >= 1)
    stage.delete_rollout()
    stage.wait_for("the CanaryRollout to be gone", lambda: stage.rollout() is None, timeout=30)
    web = stage.deployment("web")
    assert web is not None and web["spec"]["replicas"] == 4
    assert web["status"]["readyReplicas"] == 4
    for name in ("web-primary", "web-canary"):
        assert stage.deployment(name) is None, f"Deployment {name}"
    for name in ("web-primary", "web-canary"):
        assert stage.service(name) is None, f"Service {name}"
    apex = stage.service("web")  # what routes and clients name: handed over, selecting web's own pods
    assert apex is not None and not apex["metadata"].get("ownerReferences")
    assert apex["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]


def test_invalid_specs_are_rejected_with_a_specific_message_and_touch_nothing() -> None:
    with stages.Stage(rollout=False) as stage:
        assert stage.prometheus is not None
        manifest = stage.plan.manifest(stage.prometheus.url)
        manifest["spec"]["steps"][0] = {"setWeight": 150}
        refused = stage.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
        assert refused.returncode != 0
        assert "setWeight" in refused.stderr and "100" in refused.stderr

        manifest = stage.plan.manifest(stage.prometheus.url)
        manifest["spec"]["analysis"]["metrics"][0] = {
            "name": "custom",
            "query": 'sum(rate(x{pod=~"{{ pods }}"}[1m]))',
            "max": 1,
        }
        stage.apply(manifest)
        status = stage.wait_status(
            "the InvalidSpec condition",
            lambda status: any(c["reason"] == "InvalidSpec" for c in status.get("conditions", [])),
            posted=True,
        )
        assert "unknown query variable(s) pods" in status["message"]
        warning = stage.events("InvalidSpec")
        assert warning and warning[0]["type"] == "Warning"
        assert_not_taken_over(stage.deployment("web"), 4)
        assert stage.deployment("web-primary") is None
        stalled = (("namespace", "shop"), ("reason", "InvalidSpec"), ("rollout", "web"))
        assert stage.operator_metrics()[("canary_operator_rollout_stalled", stalled)] == 1


def test_a_pause_without_duration_waits_for_the_promote_annotation() -> None:
    plan = stages.Plan(steps=[{"setWeight": 20}, {"pause": {}}])
    with stages.Stage(plan=plan) as stage:
        ready(stage)
        stage.set_image("example/web:2.0")
        stage.wait_status(
            "the manual gate", lambda status: "canary.dev/promote" in status.get("message", ""), timeout=60
        )
        assert stage.status()["phase"] == "Progressing"
        annotated = stage.kubectl("-n", "shop", "annotate", "canaryrollout", "web", "canary.dev/promote=true")
        assert annotated.returncode == 0, annotated.stderr
        stage.wait_phase("Succeeded", timeout=60)
        rollout = stage.rollout()
        assert rollout is not None
        assert "canary.dev/promote" not in (rollout["metadata"].get("annotations") or {}), "used up once acted on"
        assert image_of(stage.deployment("web-primary")) == "example/web:2.0"
