"""A canary blocked mid-way by a Git edit, with the real operator process: bounded by progressDeadline.

Git makes the spec invalid while a canary serves 20% at a manual gate. The operator says why at once (a
condition and one Warning Event), keeps the canary where it is for progressDeadline (8 s here), then gives the
traffic back to the stable primary with the spec it last acted with, and says so once more. Fixing the spec
leaves the release rolled back: the revision is not retried until it changes (or canary.dev/retry).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from canary_bench import stage as stages

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prometheus_tools")]

DEADLINE = "8s"


def stalled(status: dict[str, Any]) -> tuple[str, str] | None:
    found = next((c for c in status.get("conditions", []) if c["type"] == "Stalled"), None)
    return (found["status"], found["reason"]) if found else None


def canary_replicas(stage: stages.Stage) -> int:
    canary = stage.deployment("web-canary")
    assert canary is not None
    return int(canary["spec"]["replicas"])


def patch_spec(stage: stages.Stage, spec: dict[str, Any]) -> None:
    done = stage.kubectl(
        "-n", "shop", "patch", "canaryrollout", "web", "--type", "merge", "-p", json.dumps({"spec": spec})
    )
    assert done.returncode == 0, done.stderr


def test_a_spec_made_invalid_mid_canary_gives_the_traffic_back_at_the_progress_deadline() -> None:
    plan = stages.Plan(steps=[{"setWeight": 20}, {"pause": {}}])
    with stages.Stage(rollout=False, plan=plan) as stage:
        assert stage.prometheus is not None
        manifest = stage.plan.manifest(stage.prometheus.url)
        manifest["spec"]["progressDeadline"] = DEADLINE
        stage.apply(manifest)
        stage.wait_phase("Stable", timeout=30)
        stage.wait_traffic()
        stage.set_image("example/web:2.0")
        stage.wait_status("the manual gate", lambda s: "canary.dev/promote" in s.get("message", ""), timeout=60)
        serving = canary_replicas(stage)
        assert serving > 0

        patch_spec(stage, {"analysis": {"interval": "0s"}})  # admitted by the CRD; the model needs at least 1s
        blocked_at = time.monotonic()
        status = stage.wait_status(
            "the InvalidSpec condition", lambda s: stalled(s) == ("True", "InvalidSpec"), posted=True
        )
        assert status["phase"] == "Progressing" and "interval" in status["message"]
        warning = stage.events("InvalidSpec")
        assert len(warning) == 1 and warning[0]["type"] == "Warning"
        assert f"for at most progressDeadline {DEADLINE}" in warning[0]["message"]
        assert canary_replicas(stage) == serving, "within the deadline the canary keeps its weight"

        status = stage.wait_phase("RolledBack", timeout=30)
        assert time.monotonic() - blocked_at >= 7, "not before progressDeadline"
        assert stalled(status) is not None and stalled(status) == ("True", "InvalidSpec")
        stage.wait_for("the canary scaled to 0", lambda: canary_replicas(stage) == 0)
        stage.wait_for("weight 0 reported", lambda: stage.status().get("weight") == 0)
        primary = stage.deployment("web-primary")
        assert primary is not None
        assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == stages.STABLE_IMAGE
        given_back = stage.events("BlockedDeadlineExceeded")
        assert len(given_back) == 1 and given_back[0]["type"] == "Warning"
        assert "InvalidSpec" in given_back[0]["message"] and "traffic 100% primary" in given_back[0]["message"]

        patch_spec(stage, {"analysis": {"interval": stage.plan.interval}})  # fixed in Git
        status = stage.wait_status("the block lifted", lambda s: stalled(s) == ("True", "RolledBack"), posted=True)
        assert status["phase"] == "RolledBack" and status["rejectedRevision"] == status["canaryRevision"]
        assert len(stage.events("InvalidSpec")) == 1 and len(stage.events("BlockedDeadlineExceeded")) == 1
        assert [e["reason"] for e in stage.events()].count("CanaryStarted") == 1
