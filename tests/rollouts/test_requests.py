"""Requests by annotation (what ``kubectl canary`` writes): each acts on what waits for it, then is removed."""

from __future__ import annotations

import helpers
from helpers import V1, V2, V3, World

from canary_operator import models, rollouts

Phase = models.Phase
Verdict = models.Verdict
Request = models.Request


def canary_under_way() -> World:
    world = World(spec=helpers.example_spec(interval="10s"), template=V1)
    world.tick()
    world.tick()
    world.template = V2
    world.tick()
    assert world.status.phase is Phase.PROGRESSING
    return world


def test_abort_rolls_the_canary_back_and_rejects_the_revision() -> None:
    world = canary_under_way()
    world.request(Request.ABORT)
    world.tick()
    assert world.status.phase is Phase.ROLLED_BACK and world.status.rejected_revision == "rev-2.0"
    assert world.canary_replicas == 0 and world.annotations == {}
    assert world.status.releases[-1].outcome is models.Outcome.ABORTED
    assert world.reasons().count("Aborted") == 1


def test_retry_releases_a_rejected_revision_again() -> None:
    world = canary_under_way()
    world.request(Request.ABORT)
    world.tick()
    world.tick()
    assert world.status.phase is Phase.ROLLED_BACK
    world.request(Request.RETRY)
    world.tick()
    assert world.status.phase is Phase.PROGRESSING and world.status.canary_revision == "rev-2.0"
    assert world.reasons().count("Retried") == 1 and world.reasons().count("CanaryStarted") == 2
    assert world.annotations == {}


def test_retry_with_nothing_rolled_back_is_ignored_and_said_so() -> None:
    world = canary_under_way()
    world.request(Request.RETRY)
    world.tick()
    assert world.status.phase is Phase.PROGRESSING
    assert world.reasons().count("RequestIgnored") == 1 and world.annotations == {}


def test_pause_holds_the_weight_while_checks_still_roll_a_failing_canary_back() -> None:
    world = canary_under_way()
    world.run_checks(Verdict.PASS, limit=15)
    step = world.status.current_step_index
    world.request(Request.PAUSE)
    world.tick()
    assert world.status.phase is Phase.PAUSED and world.status.hold is models.Hold.REQUEST
    world.run_checks(Verdict.PASS, limit=60)
    assert world.status.phase is Phase.PAUSED and world.status.current_step_index == step, "no step advances"
    stalled = next(c for c in world.status.conditions if c.type == "Stalled")
    assert stalled.reason == "PausedByRequest"
    world.run_checks(Verdict.FAIL, until=Phase.ROLLED_BACK)
    assert world.status.phase is Phase.ROLLED_BACK


def test_a_new_revision_during_a_pause_by_request_starts_paused_at_step_1() -> None:
    world = canary_under_way()
    world.run_checks(Verdict.PASS, limit=15)
    world.request(Request.PAUSE)
    world.tick()
    world.template = V3  # Git syncs another revision while the release is paused
    world.tick()
    assert world.status.canary_revision == "rev-3.0" and world.status.current_step_index == 0
    assert world.status.phase is Phase.PAUSED and world.status.hold is models.Hold.REQUEST
    assert world.reasons().count("CanarySuperseded") == 1
    world.run_checks(Verdict.PASS, limit=60)
    assert world.status.phase is Phase.PAUSED and world.status.current_step_index == 0, "no step advances"
    world.request(Request.RESUME)
    world.tick()
    world.run_checks(Verdict.PASS, until=Phase.SUCCEEDED, limit=300)
    assert world.status.stable_revision == "rev-3.0"


def test_resume_releases_a_pause_by_request() -> None:
    world = canary_under_way()
    world.request(Request.PAUSE)
    world.tick()
    world.request(Request.RESUME)
    world.tick()
    assert world.status.phase is Phase.PROGRESSING and world.status.hold is None
    world.run_checks(Verdict.PASS, until=Phase.SUCCEEDED, limit=300)
    assert world.status.phase is Phase.SUCCEEDED


def test_promote_full_skips_the_remaining_steps_after_the_next_passed_check() -> None:
    world = canary_under_way()
    world.request(Request.PROMOTE, "full")
    world.tick()
    assert world.status.promote_full and world.status.phase is Phase.PROGRESSING
    world.run_checks(Verdict.INCONCLUSIVE, limit=15)
    assert world.status.phase is not Phase.PROMOTING, "analysis still guards the promotion"
    world.run_checks(Verdict.PASS, until=Phase.PROMOTING, limit=60)
    assert world.status.phase is Phase.PROMOTING
    assert world.reasons().count("StepAdvanced") == 0


def test_a_promote_full_of_the_old_plan_does_not_skip_the_steps_of_a_new_one() -> None:
    world = canary_under_way()
    world.request(Request.PROMOTE, "full")
    world.tick()
    assert world.status.promote_full
    raw = world.spec.model_dump(by_alias=True, exclude_none=True)
    world.spec = models.parse_spec({**raw, "steps": [{"setWeight": 10}, {"setWeight": 40}]})  # Git, mid-canary
    world.tick()
    assert not world.status.promote_full
    assert any("promote=full request is dropped" in e.message for e in world.events if e.reason == "StepsChanged")
    world.run_checks(Verdict.PASS, until=Phase.PROMOTING, limit=120)
    assert world.reasons().count("StepAdvanced") == 2, "both steps of the new plan are walked"


def test_a_revision_that_appears_during_the_takeover_is_released_as_a_canary_not_slipped_onto_the_primary() -> None:
    world = World(spec=helpers.example_spec(interval="10s"), template=V1)
    world.tick()  # takeover recorded: the primary will run V1
    world.template = V3  # an image change before the primary is ready
    world.tick()
    world.tick()
    assert world.primary_template == V1 and world.status.stable_revision == "rev-1.0"
    assert world.status.phase is Phase.PROGRESSING and world.status.canary_revision == "rev-3.0"


def test_a_target_scaled_to_zero_gives_the_canary_no_traffic() -> None:
    world = World(spec=helpers.example_spec(interval="10s"), template=V1, target_replicas=0)
    world.tick()
    world.tick()
    world.template = V2
    world.run_checks(Verdict.PASS, limit=5)
    assert world.canary_replicas == 0, "one canary pod beside no primary pod would take all the traffic"
    assert rollouts.needs(world.spec, world.status, None, world.now).primary_replicas == 0


def test_a_rolled_back_rollout_keeps_saying_why_while_it_waits_for_a_new_revision() -> None:
    world = canary_under_way()
    world.run_checks(Verdict.FAIL, until=Phase.ROLLED_BACK)
    why = world.status.releases[-1].reason
    assert why
    for _ in range(3):
        world.tick()
    assert (
        world.status.message == f"revision rev-2.0 rolled back: {why}; waiting for a new revision (or canary.dev/retry)"
    )
