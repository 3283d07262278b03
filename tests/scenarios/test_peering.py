"""Two operator replicas with Kopf peering on the bench: one acts, the other takes over when it dies.

Both replicas are real ``python -m canary_operator`` processes against the same emulated
cluster, peered through a ``ClusterKopfPeering`` as the chart installs them. Which replica
acts is read from each one's own ``/metrics`` (its reconcile ticks) and log; that every
transition happened exactly once is read from the Events a user would see.
"""

from __future__ import annotations

import collections
import signal
import time

import pytest

from canary_bench import stage as stages

pytestmark = [pytest.mark.usefixtures("prometheus_tools"), pytest.mark.slow]

LIFETIME = 6  # seconds a dead replica's record stays valid; renewed every second, so a loaded machine may stall 5 s
PEERING = "canary-operator"


def ticks(process: stages.OperatorProcess) -> float:
    return sum(value for (name, _), value in process.metrics().items() if name == "canary_operator_reconciles_total")


def peers(stage: stages.Stage) -> int:
    assert stage.cluster is not None
    peering = stage.cluster.get(f"/apis/kopf.dev/v1/clusterkopfpeerings/{PEERING}") or {}
    return len(peering.get("status") or {})


def logged(process: stages.OperatorProcess, text: str) -> bool:
    return any(text in str(line.get("message", "")) for line in process.log_lines())


def test_two_replicas_one_acts_and_a_killed_leader_hands_over_mid_canary() -> None:
    with stages.Stage(peering=PEERING, peering_lifetime=LIFETIME) as stage:
        stage.wait_phase("Stable", timeout=30)
        stage.wait_traffic()
        leader = stage.operators[0]
        follower = stage.start_operator("follower.log")
        # A replica with peering starts paused, and stays so while it sees a live peer of higher priority.
        stage.wait_for("the second replica to join the peering", lambda: peers(stage) == 2)
        stage.wait_for("the second replica to serve /metrics", lambda: stage.operator_http("/metrics", follower)[0])

        stage.set_image("example/web:2.0")
        stage.wait_status("the canary at step 2", lambda status: status.get("currentStepIndex", 0) >= 1)
        assert ticks(leader) > 0
        assert ticks(follower) == 0, "the paused replica reconciled nothing while the leader lived"
        assert not logged(follower, "Resuming operations")

        stage.kill_operator(process=leader)
        killed_at = time.monotonic()
        stage.wait_for("the follower to take over", lambda: logged(follower, "Resuming operations"), timeout=30)
        handover = time.monotonic() - killed_at
        stage.wait_for("the follower to tick", lambda: ticks(follower) > 0, timeout=30)
        status = stage.wait_phase("Succeeded", timeout=90)

        assert handover <= LIFETIME + 4, f"handover took {handover:.1f} s"
        assert status["stableRevision"] == status["canaryRevision"]
        counts = collections.Counter(event["reason"] for event in stage.events())
        for reason in ("Initialized", "CanaryStarted", "Promoting", "Promoted"):
            assert counts[reason] == 1, f"{reason} posted {counts[reason]} times: {dict(counts)}"
        primary = stage.deployment("web-primary")
        assert primary is not None and primary["metadata"]["generation"] == 2, "created once, promoted once"


def test_a_replica_stopped_cleanly_hands_over_at_once() -> None:
    with stages.Stage(peering=PEERING, peering_lifetime=30) as stage:
        stage.wait_phase("Stable", timeout=30)
        leader = stage.operators[0]
        follower = stage.start_operator("follower.log")
        stage.wait_for("the second replica to join the peering", lambda: peers(stage) == 2)

        stage.kill_operator(signal.SIGTERM, process=leader)
        stopped_at = time.monotonic()
        stage.wait_for("the follower to take over", lambda: logged(follower, "Resuming operations"), timeout=20)
        assert time.monotonic() - stopped_at < 10, "a clean stop hands over without waiting out the 30 s lifetime"
        stage.set_image("example/web:2.0")
        stage.wait_phase("Succeeded", timeout=90)
        assert ticks(follower) > 0
