"""The continuous analysis and the pass rule in the state machine, one tick at a time."""

from __future__ import annotations

import datetime
from typing import Any

import helpers
from helpers import V1, V2, World

from canary_operator import models, rollouts

Verdict = models.Verdict


def started_world(**analysis: Any) -> World:
    """A canary of V2 at its first weight, settled, before its first check (interval 10s)."""
    world = World(spec=helpers.example_spec(**{"interval": "10s", **analysis}), template=V1)
    world.tick()
    world.tick()
    world.template = V2
    world.tick()  # canary started
    world.tick()  # weight reached
    world.tick()  # weight settled
    assert world.status.phase is models.Phase.PROGRESSING and world.status.weight_settled_at is not None
    return world


def evidence(verdict: Verdict, at: datetime.datetime, reason: str = "") -> models.EvidenceRecord:
    found = models.Evidence(
        metric="error-rate",
        window="12s since the canary started",
        canary_bad=9,
        canary_requests=40,
        primary_bad=1,
        primary_requests=360,
        p_value=0.001 if verdict is Verdict.FAIL else 0.8,
        verdict=verdict,
    )
    text = reason or (
        "error-rate 22.5% > max 1% (9/40 over 12s since the canary started)"
        if verdict is Verdict.FAIL
        else "no evidence of harm"
    )
    return models.EvidenceRecord(at=at.isoformat(), verdict=verdict, reason=text, metrics=[found])


def test_failing_evidence_between_checks_rolls_back_at_once_whatever_failure_threshold_says() -> None:
    world = started_world(failureThreshold=5)
    world.tick(evidence=evidence(Verdict.FAIL, world.now))
    assert world.status.phase is models.Phase.ROLLED_BACK
    assert world.status.rejected_revision == "rev-2.0"
    assert world.canary_replicas == 0
    rolled = [e for e in world.events if e.reason == "RolledBack"]
    assert len(rolled) == 1
    assert "rolled back as the always-valid test of the counts since the canary started shows: error-rate 22.5%" in (
        rolled[0].message
    )
    release = world.status.releases[-1]
    assert release.outcome == "rolled_back" and release.time_to_detect_seconds is not None
    # `kubectl get`'s LAST VERDICT beside RolledBack: the failing evidence, not the last (inconclusive) check.
    assert world.status.last_verdict == "Fail (error-rate, since the start)"


def test_evidence_without_harm_is_recorded_and_changes_nothing_else() -> None:
    world = started_world()
    world.tick(evidence=evidence(Verdict.PASS, world.now))
    assert world.status.phase is models.Phase.PROGRESSING
    assert world.status.evidence is not None and world.status.evidence.metrics[0].canary_requests == 40
    assert world.status.current_step_index == 0, "no evidence of harm between checks does not advance a step"


def test_with_continuous_off_failing_evidence_does_not_roll_back() -> None:
    world = started_world(continuous=False)
    world.tick(evidence=evidence(Verdict.FAIL, world.now))
    assert world.status.phase is models.Phase.PROGRESSING


def test_a_check_whose_evidence_since_the_start_fails_rolls_back_on_its_first_failure() -> None:
    world = started_world(failureThreshold=3)
    world.now += datetime.timedelta(seconds=10)
    failing = evidence(Verdict.FAIL, world.now).metrics[0]
    check = helpers.record(Verdict.FAIL, at=world.now, evidence=failing)
    world.tick(check)
    assert world.status.phase is models.Phase.ROLLED_BACK
    assert world.reasons().count("RolledBack") == 1


def test_the_continuous_test_is_due_every_continuous_interval_between_checks() -> None:
    world = started_world(continuousInterval="4s", interval="1m")
    due = []
    for _ in range(12):
        is_due = rollouts.needs(world.spec, world.status, None, world.now).continuous
        due.append(is_due)
        world.tick(evidence=evidence(Verdict.PASS, world.now) if is_due else None)
    # Started 3 ticks (3 s) before: due at 4 s, then every 4 s after the last reading.
    assert due == [False, True, False, False, False, True, False, False, False, True, False, False]
    assert not rollouts.needs(helpers.example_spec(continuous=False), world.status, None, world.now).continuous


def cleared_check(at: datetime.datetime) -> models.CheckRecord:
    base = helpers.record(Verdict.INCONCLUSIVE, at=at)
    latency = models.MetricResult(name="latency-p99", verdict=Verdict.PASS, reason="latency-p99 Pass")
    return base.model_copy(
        update={
            "metrics": [*base.metrics, latency],
            "cleared": True,
            "detectable": "after 412 canary requests; a canary with error-rate >= 2.9% would have been caught",
        }
    )


def test_the_no_harm_rule_advances_and_promotes_on_cleared_checks_and_records_what_they_would_have_caught() -> None:
    world = started_world()
    for _ in range(400):
        check = cleared_check(world.now) if rollouts.needs(world.spec, world.status, None, world.now).check else None
        world.tick(check)
        if world.status.phase is models.Phase.SUCCEEDED:
            break
    assert world.status.phase is models.Phase.SUCCEEDED
    assert world.reasons().count("StepAdvanced") == 4
    advanced = next(e.message for e in world.events if e.reason == "StepAdvanced")
    assert advanced.startswith("step 1/4 done at weight 10%: no harm shown (passRule no-harm), not proven"), advanced
    assert "yet: error-rate Inconclusive; latency-p99 Pass [release" in advanced, (
        "every metric, not the first unsure one"
    )
    assert world.reasons().count("Paused") == 0, "cleared checks do not count toward pausing"
    release = world.status.releases[-1]
    assert release.outcome == "promoted"
    assert release.detectable == "after 412 canary requests; a canary with error-rate >= 2.9% would have been caught"
    assert "promoted after 412 canary requests" in next(e.message for e in world.events if e.reason == "Promoting")


def test_the_proven_rule_does_not_advance_on_checks_that_only_show_no_harm() -> None:
    world = started_world(passRule="proven")
    for _ in range(60):
        check = (
            helpers.record(Verdict.INCONCLUSIVE, at=world.now)
            if rollouts.needs(world.spec, world.status, None, world.now).check
            else None
        )
        world.tick(check)
    assert world.status.current_step_index == 0
    assert world.status.phase is models.Phase.PAUSED


def test_recent_checks_keep_no_promql_but_the_last_check_does() -> None:
    world = started_world()
    world.now += datetime.timedelta(seconds=10)
    world.tick(helpers.record(Verdict.PASS, at=world.now, query='sum(rate(http_requests_total{code=~"5.."}[10s]))'))
    assert world.status.last_check is not None and world.status.last_check.metrics[0].query
    assert world.status.recent_checks and world.status.recent_checks[-1].metrics, "there is a recent check to look at"
    assert all(m.query is None for c in world.status.recent_checks for m in c.metrics)
