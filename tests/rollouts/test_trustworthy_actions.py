"""The seven ways the old state machine failed in the minutes that matter, each pinned down tick by tick.

``World`` records each decision before acting on it, as the I/O edge does. A process killed between the
status write and the actions is played by ``record_only``; a status write refused with 409 by
``refused``: the decision is dropped and the next tick decides again from what was recorded.
"""

from __future__ import annotations

import dataclasses
import datetime

import helpers
from helpers import V1, V2, World, record

from canary_operator import models, rollouts

Phase = models.Phase
Verdict = models.Verdict


def initialized(**analysis: object) -> World:
    world = World(spec=helpers.example_spec(interval="10s", **analysis), template=V1)
    world.tick()
    world.tick()
    assert world.status.phase is Phase.STABLE
    return world


def record_only(world: World, check: models.CheckRecord | None = None) -> rollouts.Decision:
    """The operator dies right after the status write: nothing of the decision is acted on."""
    decision = rollouts.reconcile(world.spec, world.status, world.observe(check), world.now)
    world.status = decision.status
    world.now += datetime.timedelta(seconds=1)
    return decision


def refused(world: World, check: models.CheckRecord | None = None) -> rollouts.Decision:
    """The status write meets a 409: the decision is dropped whole (no action, no Event)."""
    decision = rollouts.reconcile(world.spec, world.status, world.observe(check), world.now)
    world.now += datetime.timedelta(seconds=1)
    return decision


def with_spec(world: World, **changes: object) -> None:
    raw = world.spec.model_dump(by_alias=True, exclude_none=True)
    raw.update(changes)
    world.spec = models.parse_spec(raw)


def first_failure_tick(world: World) -> None:
    """Run a bad canary up to the tick whose check rolls it back (that check not yet handed in)."""
    for _ in range(60):
        if rollouts.needs(world.spec, world.status, None, world.now).check:
            if world.status.failed_checks.get("error-rate", 0) == world.spec.analysis.failure_threshold - 1:
                return
            world.tick(record(Verdict.FAIL, at=world.now))
        else:
            world.tick()
    raise AssertionError("no check came due")


def test_killed_after_the_rollback_is_recorded_the_restart_never_scales_the_canary_back_up() -> None:
    world = initialized()
    world.template = V2
    first_failure_tick(world)
    assert world.canary_replicas == 1
    record_only(world, record(Verdict.FAIL, at=world.now))  # "RolledBack" written, then killed
    assert world.status.phase is Phase.ROLLED_BACK and world.canary_replicas == 1
    for _ in range(5):  # the restarted operator
        world.tick()
        assert world.canary_replicas == 0, "the recorded rollback is carried out, never reversed"
    assert world.status.phase is Phase.ROLLED_BACK
    assert world.reasons().count("RolledBack") == 1


def test_a_rollback_during_promotion_puts_the_stable_template_back_on_the_primary() -> None:
    world = initialized()
    world.template = V2
    world.run_checks(Verdict.PASS, until=Phase.PROMOTING, limit=200)
    assert world.status.promoting_template == V2 and world.primary_template == V2
    assert world.primary is not None
    world.primary = dataclasses.replace(world.primary, ready_replicas=3)  # mid-rollout, and it turns bad
    world.request(models.Request.ABORT)
    world.tick()
    assert world.status.phase is Phase.ROLLED_BACK
    assert world.primary_template == V1, "the primary runs the stable template again"
    assert world.status.stable_revision == "rev-1.0" and world.status.stable_template == V1
    assert world.canary_replicas == 0


def test_killed_between_recording_promoting_and_patching_the_primary_then_aborted_serves_the_stable_version() -> None:
    world = initialized()
    world.template = V2
    for _ in range(200):
        due = rollouts.needs(world.spec, world.status, None, world.now).check
        check = record(Verdict.PASS, at=world.now) if due else None
        decision = rollouts.reconcile(world.spec, world.status, world.observe(check), world.now)
        if decision.status.phase is Phase.PROMOTING:
            record_only(world, check)
            break
        world.tick(check)
    assert world.status.phase is Phase.PROMOTING and world.primary_template == V1
    world.tick()  # the restart carries the recorded promotion out
    assert world.primary_template == V2
    world.request(models.Request.ABORT)
    world.tick()
    assert world.primary_template == V1 and world.status.phase is Phase.ROLLED_BACK


def test_a_status_write_refused_with_409_records_the_rollback_and_its_event_once() -> None:
    world = initialized()
    world.template = V2
    first_failure_tick(world)
    check = record(Verdict.FAIL, at=world.now)
    dropped = refused(world, check)
    assert [e.reason for e in dropped.events] == ["RolledBack"]
    assert world.status.phase is Phase.PROGRESSING, "nothing was recorded"
    world.run_checks(Verdict.FAIL, until=Phase.ROLLED_BACK)
    world.tick()
    assert world.reasons().count("RolledBack") == 1


def test_a_canary_whose_pods_never_become_ready_is_rolled_back_at_the_progress_deadline() -> None:
    world = initialized()
    with_spec(world, progressDeadline="2m")
    world.template = V2
    world.tick()
    assert world.status.phase is Phase.PROGRESSING
    for _ in range(130):
        assert world.canary is not None
        world.canary = dataclasses.replace(world.canary, ready_replicas=0)  # crash-looping pods
        world.tick()
        if world.status.phase is not Phase.PROGRESSING:
            break
    assert world.status.phase is Phase.ROLLED_BACK
    assert "canary not serving 10% with ready pods within progressDeadline 2m" in (world.status.message or "")
    deadline = next(e for e in world.events if e.reason == "ProgressDeadlineExceeded")
    assert deadline.type == "Warning"
    stalled = next(c for c in world.status.conditions if c.type == "Stalled")
    assert stalled.status == "True"
    assert world.canary_replicas == 0


def test_with_progress_deadline_abort_false_the_rollout_holds_and_says_why() -> None:
    world = initialized()
    with_spec(world, progressDeadline="1m", progressDeadlineAbort=False)
    world.template = V2
    for _ in range(70):
        if world.canary is not None:
            world.canary = dataclasses.replace(world.canary, ready_replicas=0)
        world.tick()
    assert world.status.phase is Phase.PAUSED and world.status.hold is models.Hold.DEADLINE
    stalled = next(c for c in world.status.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "ProgressDeadlineExceeded")
    assert world.reasons().count("ProgressDeadlineExceeded") == 1


def test_git_shrinking_the_steps_mid_canary_restarts_the_new_plan_without_a_crash() -> None:
    world = initialized()
    world.template = V2
    for _ in range(200):
        if world.status.current_step_index == 2:
            break
        due = rollouts.needs(world.spec, world.status, None, world.now).check
        world.tick(record(Verdict.PASS, at=world.now) if due else None)
    assert world.status.current_step_index == 2
    with_spec(world, steps=[{"setWeight": 50}])  # 4 steps become 1 while at step 3
    world.tick()
    assert world.status.phase is Phase.PROGRESSING and world.status.current_step_index == 0
    assert world.reasons().count("StepsChanged") == 1
    world.run_checks(Verdict.PASS, until=Phase.SUCCEEDED, limit=200)
    assert world.status.phase is Phase.SUCCEEDED and world.primary_template == V2


def test_a_promote_annotation_set_before_the_gate_is_ignored_and_removed_not_kept_for_later() -> None:
    world = initialized()
    with_spec(world, steps=[{"setWeight": 20}, {"pause": {}}])
    world.template = V2
    world.tick()
    world.request(models.Request.PROMOTE)  # while step 1 (20%) is still being analysed
    world.tick()
    assert world.annotations == {}
    assert world.reasons().count("RequestIgnored") == 1
    assert world.status.last_request is not None and world.status.last_request.outcome.startswith("ignored")
    world.run_checks(Verdict.PASS, limit=120)
    assert world.status.phase is Phase.PROGRESSING and world.status.current_step_index == 1
    assert "waiting for annotation canary.dev/promote" in (world.status.message or ""), "the gate still waits"


def test_a_bad_canary_with_too_little_traffic_is_not_held_at_its_weight_for_ever() -> None:
    world = initialized(inconclusiveThreshold=3)
    with_spec(world, progressDeadline="5m")
    world.template = V2
    world.run_checks(Verdict.INCONCLUSIVE, until=Phase.PAUSED)
    assert world.status.phase is Phase.PAUSED and world.canary_replicas == 1
    world.run_checks(Verdict.INCONCLUSIVE, until=Phase.ROLLED_BACK, limit=400)
    assert world.status.phase is Phase.ROLLED_BACK
    assert "no conclusive check" in (world.status.message or "")
    assert world.canary_replicas == 0, "the traffic is given back"


def test_an_acknowledged_request_left_on_the_object_by_a_crash_is_not_acted_on_twice() -> None:
    world = initialized()
    world.template = V2
    world.tick()
    world.request(models.Request.PAUSE)
    record_only(world)  # acknowledged, then killed before the annotation was removed
    assert world.status.phase is Phase.PAUSED and world.annotations
    world.request(models.Request.RESUME)
    world.tick()  # the resume acts; the leftover pause is removed, not acted on again
    assert world.status.phase is Phase.PROGRESSING
    world.tick()
    assert world.status.phase is Phase.PROGRESSING
    assert world.annotations == {}
    assert world.reasons().count("PausedByRequest") == 1


def test_three_failed_ticks_in_a_row_stall_the_rollout_with_the_cause_and_a_good_tick_clears_it() -> None:
    world = initialized()
    status = world.status
    for _ in range(4):
        decision = rollouts.failed(status, 1, "ApiError: 500 InternalError: etcd timeout", world.now)
        status = decision.status
    stalled = next(c for c in status.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "ReconcileError")
    assert "etcd timeout" in stalled.message
    assert [e.reason for e in status.pending_events] == ["ReconcileError"], "one Warning Event, not one per tick"
    world.status = status
    world.tick()
    assert next(c for c in world.status.conditions if c.type == "Stalled").status == "False"
    assert world.status.reconcile_errors == 0
