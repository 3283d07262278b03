"""The rollout state machine, one tick at a time, on plain data.

``World`` plays the cluster: it records each decision, then applies the actions derived from the
recorded status to a few dataclasses (Deployments become ready at once, the router achieves the weight
it is asked for) and feeds the next tick its observations. Clocks are explicit.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import helpers
import pytest
from helpers import T0, V1, V2, V3, World, record

from canary_operator import models, observations, rollouts
from canary_operator.rollouts import checks


def initialized_world(**analysis: Any) -> World:
    spec = helpers.example_spec(interval="10s", **analysis)
    world = World(spec=spec, template=V1)
    world.tick()  # creates the primary (instantly ready here)
    world.tick()  # sees it ready: scales the target to 0
    return world


def condition(status: models.CanaryRolloutStatus, type_: str) -> models.Condition:
    return next(c for c in status.conditions if c.type == type_)


def test_takes_over_the_target_and_scales_it_to_zero_once_the_primary_is_ready() -> None:
    world = World(spec=helpers.example_spec(), template=V1)
    first = world.tick()
    assert world.status.phase is models.Phase.INITIALIZING
    assert world.status.target_replicas == 9, "the target's replicas are recorded before anything is scaled"
    assert not any(
        isinstance(a, rollouts.ScaleTarget) for a in rollouts.derive(world.spec, first.status, world.observe(None))
    )
    world.tick()
    assert world.status.phase is models.Phase.STABLE
    assert world.target_replicas == 0
    assert world.primary is not None and world.primary.replicas == 9
    assert condition(world.status, "Ready").status == "True"
    assert "Initialized" in world.reasons()


def test_a_new_revision_starts_a_canary_at_the_first_step_weight() -> None:
    world = initialized_world()
    world.template = V2
    world.tick()
    assert world.status.phase is models.Phase.PROGRESSING
    assert world.status.canary_revision == "rev-2.0"
    assert world.canary is not None and world.canary.revision == "rev-2.0"
    assert world.canary_replicas == 1  # 1 canary pod beside 9 primary pods is 10%
    world.tick()
    assert world.status.weight == 10
    assert condition(world.status, "Reconciling").status == "True"


def test_a_healthy_canary_walks_every_step_and_is_promoted() -> None:
    world = initialized_world()
    world.template = V2
    world.run_checks(models.Verdict.PASS, until=models.Phase.SUCCEEDED, limit=200)
    assert world.status.phase is models.Phase.SUCCEEDED
    assert world.status.stable_revision == "rev-2.0"
    assert world.primary_template == V2
    world.tick()  # the status reports the weight observed, one tick after it was set
    assert world.canary_replicas == 0 and world.status.weight == 0
    assert world.reasons().count("StepAdvanced") == 4
    assert world.reasons().count("Promoted") == 1
    assert condition(world.status, "Ready").status == "True"


def test_a_step_advances_only_on_a_check_that_measured_the_new_weight() -> None:
    world = initialized_world()
    world.template = V2
    world.tick()  # canary scaled to its first weight
    world.tick()  # weight settled
    settled_at = world.now - datetime.timedelta(seconds=1)
    world.tick(record(models.Verdict.PASS, at=world.now))  # its window began before the weight settled
    assert world.status.current_step_index == 0
    world.now = settled_at + datetime.timedelta(seconds=10)
    world.tick(record(models.Verdict.PASS, at=world.now))
    assert world.status.current_step_index == 1


def test_the_pause_step_holds_for_its_duration_even_with_passing_checks() -> None:
    world = initialized_world()
    world.template = V2
    for _ in range(25):  # step 0 passes within 25 s; the 30 s pause is not over then
        due = rollouts.needs(world.spec, world.status, None, world.now).check
        world.tick(record(models.Verdict.PASS, at=world.now) if due else None)
    assert world.status.current_step_index == 1
    assert world.status.phase is models.Phase.PROGRESSING


def test_failing_checks_roll_back_after_failure_threshold_consecutive_failures() -> None:
    world = initialized_world(failureThreshold=2)
    world.template = V2
    world.run_checks(models.Verdict.FAIL, until=models.Phase.ROLLED_BACK)
    assert world.status.phase is models.Phase.ROLLED_BACK
    assert world.status.rejected_revision == "rev-2.0"
    assert world.canary_replicas == 0
    assert world.reasons().count("CheckFailed") == 1
    rollback = next(e for e in world.events if e.reason == "RolledBack")
    assert rollback.type == "Warning" and "error-rate" in rollback.message
    stalled = condition(world.status, "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "RolledBack")


def test_one_failed_check_between_passes_does_not_roll_back() -> None:
    world = initialized_world(failureThreshold=2)
    world.template = V2
    verdicts = iter([models.Verdict.FAIL, models.Verdict.PASS, models.Verdict.FAIL, models.Verdict.PASS])
    for _ in range(45):
        due = rollouts.needs(world.spec, world.status, None, world.now).check
        world.tick(record(next(verdicts, models.Verdict.PASS), at=world.now) if due else None)
    assert world.status.phase is models.Phase.PROGRESSING
    assert world.status.rejected_revision is None


def test_a_rejected_revision_is_not_retried_until_the_template_changes() -> None:
    world = initialized_world()
    world.template = V2
    world.run_checks(models.Verdict.FAIL, until=models.Phase.ROLLED_BACK)
    world.run_checks(models.Verdict.PASS, limit=30)
    assert world.status.phase is models.Phase.ROLLED_BACK
    assert world.reasons().count("CanaryStarted") == 1
    world.template = V3
    world.tick()
    assert world.status.phase is models.Phase.PROGRESSING
    assert world.status.canary_revision == "rev-3.0"


def test_inconclusive_checks_never_advance_and_hold_the_rollout_after_the_threshold() -> None:
    world = initialized_world(inconclusiveThreshold=3)
    world.template = V2
    world.run_checks(models.Verdict.INCONCLUSIVE, limit=100)
    assert world.status.phase is models.Phase.PAUSED
    assert world.status.current_step_index == 0
    assert world.status.weight == 10, "held at the current weight, not promoted, not rolled back"
    stalled = condition(world.status, "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "InsufficientTraffic")
    assert world.reasons().count("Paused") == 1


def test_a_paused_rollout_resumes_by_itself_once_checks_are_conclusive() -> None:
    world = initialized_world(inconclusiveThreshold=2)
    world.template = V2
    world.run_checks(models.Verdict.INCONCLUSIVE, until=models.Phase.PAUSED)
    world.run_checks(models.Verdict.PASS, until=models.Phase.SUCCEEDED, limit=200)
    assert "Resumed" in world.reasons()
    assert world.status.phase is models.Phase.SUCCEEDED


def test_a_newer_revision_mid_rollout_restarts_the_analysis_for_it() -> None:
    world = initialized_world()
    world.template = V2
    world.run_checks(models.Verdict.PASS, limit=25)
    assert world.status.current_step_index == 1
    world.template = V3
    world.tick()
    assert world.status.canary_revision == "rev-3.0"
    assert world.status.current_step_index == 0
    assert world.canary is not None and world.canary.revision == "rev-3.0"
    assert "CanarySuperseded" in world.reasons()


def test_reverting_the_target_to_the_stable_revision_abandons_the_canary() -> None:
    world = initialized_world()
    world.template = V2
    world.run_checks(models.Verdict.PASS, limit=5)
    world.template = V1
    world.tick()
    assert world.status.phase is models.Phase.STABLE
    assert world.canary_replicas == 0


def test_a_manual_pause_waits_for_the_promote_annotation() -> None:
    world = initialized_world()
    spec = world.spec.model_dump(by_alias=True)
    spec["steps"] = [{"setWeight": 20}, {"pause": {}}]
    world.spec = models.parse_spec(spec)
    world.template = V2
    world.run_checks(models.Verdict.PASS, limit=60)
    assert world.status.phase is models.Phase.PROGRESSING and world.status.current_step_index == 1
    assert "canary.dev/promote" in (world.status.message or "")
    world.request(models.Request.PROMOTE)
    world.tick()
    assert world.annotations == {}, "acknowledged, then removed"
    assert world.status.last_request is not None and world.status.last_request.outcome == "step 2/2 passed"
    assert world.status.phase is models.Phase.PROMOTING


def test_a_restart_mid_promotion_repeats_no_promotion() -> None:
    world = initialized_world()
    world.template = V2
    world.run_checks(models.Verdict.PASS, until=models.Phase.PROMOTING, limit=200)
    saved = world.status
    # The operator dies after writing "Promoting"; the primary is mid-rollout when it comes back.
    assert world.primary is not None
    world.primary = dataclasses.replace(world.primary, ready_replicas=3)
    world.status = saved
    world.tick()
    assert world.status.phase is models.Phase.PROMOTING
    world.primary = dataclasses.replace(world.primary, ready_replicas=9)
    world.tick()
    world.tick()
    assert world.status.phase is models.Phase.SUCCEEDED
    assert world.primary_updates == 2  # the takeover, and exactly one promotion
    assert world.reasons().count("Promoted") == 1


def test_a_missing_target_is_reported_and_nothing_is_done() -> None:
    spec = helpers.example_spec()
    obs = observations.Observations(generation=3, target=None)
    decision = rollouts.reconcile(spec, models.CanaryRolloutStatus(), obs, T0)
    assert rollouts.derive(spec, decision.status, obs) == ()
    assert [e.reason for e in decision.events] == ["TargetNotFound"]
    stalled = condition(decision.status, "Stalled")
    assert (stalled.status, stalled.reason, stalled.observed_generation) == ("True", "TargetNotFound", 3)
    assert decision.status.observed_generation == 3


def test_condition_transition_times_move_only_when_the_status_flips() -> None:
    world = initialized_world()
    ready_since = condition(world.status, "Ready").last_transition_time
    world.tick()
    assert condition(world.status, "Ready").last_transition_time == ready_since
    world.template = V2
    world.tick()
    assert condition(world.status, "Ready").last_transition_time != ready_since


def slo_world(remaining: float | None, **slo: Any) -> World:
    world = initialized_world()
    world.spec = world.spec.model_copy(update={"slo": models.SLO(objective=99.9, **slo)})
    world.budget_remaining = remaining
    world.budget_problem = "" if remaining is not None else "Prometheus unreachable"
    world.template = V2
    return world


def test_an_exhausted_error_budget_blocks_the_canary_until_forced() -> None:
    world = slo_world(0.04)
    world.tick()
    assert world.status.phase is models.Phase.STABLE and world.canary_replicas == 0
    assert world.status.budget is not None and world.status.budget.band == "exhausted"
    stalled = condition(world.status, "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "ErrorBudgetExhausted")
    world.tick()
    assert world.reasons().count("ErrorBudgetExhausted") == 1, "said once, not every tick"
    world.request(models.Request.FORCE_RELEASE)
    world.tick()
    assert world.status.phase is models.Phase.PROGRESSING
    assert world.status.budget is not None and world.status.budget.action == "forced"
    assert not world.annotations, "the annotation is used up: the next release faces the budget again"


def test_a_retry_under_an_slo_starts_the_revision_once_the_budget_is_read_not_as_unknown() -> None:
    world = slo_world(0.8)
    world.run_checks(models.Verdict.FAIL, until=models.Phase.ROLLED_BACK)
    world.request(models.Request.RETRY)
    world.tick()  # the budget was not read this tick: the rejected revision needed none
    assert condition(world.status, "Stalled").reason != "ErrorBudgetUnknown"
    world.tick()
    assert world.status.phase is models.Phase.PROGRESSING
    assert "ErrorBudgetUnknown" not in world.reasons()
    assert world.status.budget is not None and world.status.budget.band == "healthy"


def test_a_canary_blocked_by_the_error_budget_writes_its_status_once_not_every_tick() -> None:
    world = slo_world(0.04)
    world.tick()
    blocked = world.status
    world.tick()
    world.tick()
    assert world.status == blocked, "nothing changed: a tick that writes nothing"
    world.budget_remaining = 0.02
    world.tick()
    assert world.status.budget is not None and world.status.budget.remaining == 0.02, "a new reading is recorded"


def test_an_unknown_error_budget_never_counts_as_enough_until_a_person_forces_the_release() -> None:
    world = slo_world(None)
    world.tick()
    world.tick()
    assert world.status.phase is models.Phase.STABLE and world.canary_replicas == 0
    assert condition(world.status, "Stalled").reason == "ErrorBudgetUnknown"
    assert "annotate canary.dev/force-release" in (world.status.message or "")
    assert world.reasons().count("ErrorBudgetUnknown") == 1
    world.request(models.Request.FORCE_RELEASE)  # a new service: no history to read a budget from
    world.tick()
    assert world.status.phase is models.Phase.PROGRESSING
    assert world.status.budget is not None and (world.status.budget.band, world.status.budget.action) == (
        "unknown",
        "forced",
    )
    assert not world.annotations, "used once"


@pytest.mark.parametrize("remaining", [None, 0.04])
def test_a_forced_release_held_by_a_shut_pre_rollout_gate_is_not_used_up_until_the_canary_starts(
    remaining: float | None,
) -> None:
    # examples/web-gated.yaml has both: an SLO and a pre-rollout gate. Used up while the gate is shut, the
    # annotation would be gone (acknowledged "started despite the error budget") and the revision blocked by
    # the budget again once the gate opens.
    world = slo_world(remaining)
    hook = models.Webhook.model_validate(
        {"name": "change-board", "type": "pre-rollout", "url": "http://hooks.shop/", "onFailure": "wait"}
    )
    world.spec = world.spec.model_copy(update={"webhooks": [hook]})
    world.request(models.Request.FORCE_RELEASE)

    def answer(open_: bool) -> None:
        world.gate_answers = [
            models.GateRecord(
                name="change-board", type="pre-rollout", revision="rev-2.0", open=open_, at=world.now.isoformat()
            )
        ]

    for _ in range(2):
        answer(False)
        world.tick(advance=120)
    assert world.status.phase is models.Phase.STABLE, "the gate holds it"
    assert world.annotations, "the force-release still waits for the canary it forces"
    assert "started despite the error budget" not in str(world.status.requests)
    answer(True)
    world.tick()
    assert world.status.phase is models.Phase.PROGRESSING
    assert world.status.budget is not None and world.status.budget.action == "forced"
    assert not world.annotations, "used once, by the canary it started"
    assert world.reasons().count("ErrorBudgetLow") == 1, "told once, as the canary starts, not every tick it waited"


@pytest.mark.parametrize(
    ("remaining", "band", "factor", "warned"),
    [(0.8, "healthy", 1.0, False), (0.3, "caution", 1.0, True), (0.15, "warning", 0.5, True)],
)
def test_the_budget_band_decides_how_the_canary_runs(remaining: float, band: str, factor: float, warned: bool) -> None:
    world = slo_world(remaining)
    world.tick()
    assert world.status.phase is models.Phase.PROGRESSING
    assert world.status.budget is not None and world.status.budget.band == band
    assert rollouts.needs(world.spec, world.status, None, world.now).tighten == factor
    assert ("ErrorBudgetLow" in world.reasons()) is warned


def test_too_little_traffic_extends_the_step_up_to_max_step_extension_then_holds() -> None:
    world = initialized_world(maxStepExtension="30s", inconclusiveThreshold=1)
    world.template = V2
    world.run_checks(models.Verdict.INCONCLUSIVE, limit=25)
    assert world.status.phase is models.Phase.PROGRESSING, "extended, not held, within 30 s past the plan"
    assert "extended" in (world.status.message or "")
    world.run_checks(models.Verdict.INCONCLUSIVE, until=models.Phase.PAUSED, limit=60)
    assert world.status.phase is models.Phase.PAUSED
    assert condition(world.status, "Stalled").reason == "InsufficientTraffic"
    assert world.status.current_step_index == 0


def test_each_finished_release_is_recorded_with_its_outcome_and_durations() -> None:
    world = initialized_world()
    world.template = V2
    world.run_checks(models.Verdict.PASS, until=models.Phase.SUCCEEDED, limit=200)
    world.template = V3
    world.run_checks(models.Verdict.FAIL, until=models.Phase.ROLLED_BACK)
    world.tick()
    world.tick()  # the router reports the canary empty: traffic restored
    promoted, rolled_back = world.status.releases
    assert (promoted.outcome, promoted.revision) == ("promoted", "rev-2.0")
    assert promoted.duration_seconds is not None and promoted.duration_seconds > 60
    assert (rolled_back.outcome, rolled_back.revision) == ("rolled_back", "rev-3.0")
    assert rolled_back.time_to_detect_seconds == pytest.approx(21, abs=2)  # 2 checks of 10 s, after settling
    assert rolled_back.restored_at is not None
    assert rolled_back.time_to_restore_seconds == pytest.approx(12, abs=2)  # first failing check to empty canary


def test_checks_and_events_name_their_release() -> None:
    world = initialized_world()
    world.template = V2
    world.run_checks(models.Verdict.FAIL, until=models.Phase.ROLLED_BACK)
    release = world.status.release_id
    assert release is not None
    assert all(check.release == release for check in world.status.recent_checks)
    started = next(e for e in world.events if e.reason == "CanaryStarted")
    assert started.message.endswith(f"[release {release}]")


def test_one_decisive_comparison_rolls_back_without_waiting_for_the_streak() -> None:
    world = initialized_world(failureThreshold=2)
    world.template = V2
    for _ in range(30):
        if rollouts.needs(world.spec, world.status, None, world.now).check:
            p_value = 1e-9  # beyond (1 - 0.99) ** 2: as unlikely on a good canary as two failures in a row
            world.tick(record(models.Verdict.FAIL, at=world.now, p_value=p_value))
            break
        world.tick()
    assert world.status.phase is models.Phase.ROLLED_BACK
    assert world.reasons().count("CheckFailed") == 0


def test_a_merely_significant_comparison_still_needs_the_streak() -> None:
    analysis = helpers.example_spec().analysis
    check = record(models.Verdict.FAIL, p_value=0.003)
    assert checks.fold_failures(analysis, {}, check) == {"error-rate": 1}


def test_without_fail_fast_even_a_decisive_comparison_waits_for_the_streak() -> None:
    analysis = helpers.example_spec().analysis.model_copy(update={"fail_fast": False})
    decisive = record(models.Verdict.FAIL, p_value=1e-9)
    assert checks.fold_failures(analysis, {}, decisive) == {"error-rate": 1}
    assert checks.fold_failures(analysis, {"error-rate": 1}, decisive) == {"error-rate": 2}
