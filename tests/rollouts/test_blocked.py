"""A canary blocked mid-way (its spec made invalid by Git, its route or Prometheus refused, its target deleted) is
bounded: the status says why once, and after progressDeadline the traffic goes back to the stable primary.

The pure half: ``rollouts.blocked`` (what the I/O edge asks when a tick cannot go on) and ``rollouts.reconcile``
with the target gone, tick by tick on plain data; ``World`` acts on each recorded status. The I/O half (which
router gives the traffic back, with which spec) is in tests/handlers/test_blocked.py.
"""

from __future__ import annotations

import datetime

import helpers
import pytest
from helpers import V1, V2, World, record

from canary_operator import models, observations, rollouts

Phase = models.Phase
Reason = models.Reason
Verdict = models.Verdict
INVALID = "invalid spec: spec.analysis.interval: 0s is shorter than the minimum of 1s"


def canary_at_first_step(**spec: object) -> World:
    """A canary of V2 serving its first step's 10%, weight settled, with a 2m progressDeadline."""
    raw = helpers.example_spec(interval="10s").model_dump(by_alias=True, exclude_none=True)
    raw.update({"progressDeadline": "2m", **spec})
    world = World(spec=models.parse_spec(raw), template=V1)
    world.tick()
    world.tick()
    world.template = V2
    world.tick()
    world.tick()
    assert world.status.phase is Phase.PROGRESSING and world.status.weight == 10
    return world


def blocked_tick(
    world: World, reason: Reason = Reason.INVALID_SPEC, message: str = INVALID, advance: float = 1.0
) -> rollouts.Decision:
    """One tick of a blocked rollout as the I/O edge runs it: decide, record, then give back what was recorded."""
    decision = rollouts.blocked(
        world.status, 1, reason, message, world.now, spec=world.spec, weight=world.observe(None).traffic.weight
    )
    world.status = decision.status
    if decision.status.blocked is not None and decision.status.blocked.gave_back:
        for action in rollouts.give_back(world.status, world.observe(None)):
            world.apply(action)
    world.events.extend(world.status.pending_events)
    world.status = world.status.model_copy(update={"pending_events": []})
    world.now += datetime.timedelta(seconds=advance)
    return decision


def stalled(status: models.CanaryRolloutStatus) -> tuple[str, str]:
    found = next(c for c in status.conditions if c.type == "Stalled")
    return found.status, found.reason


def test_a_canary_blocked_by_an_invalid_spec_keeps_its_weight_until_the_deadline_then_is_given_back() -> None:
    world = canary_at_first_step()
    blocked_tick(world, advance=120)
    assert world.status.phase is Phase.PROGRESSING and world.canary_replicas == 1, "within the deadline: kept"
    assert stalled(world.status) == ("True", "InvalidSpec")
    blocked_tick(world)
    assert world.status.phase is Phase.PROGRESSING, "exactly progressDeadline is not past it"
    blocked_tick(world)
    assert world.status.phase is Phase.ROLLED_BACK
    assert world.canary_replicas == 0 and world.primary_template == V1
    assert world.status.rejected_revision == "rev-2.0"
    assert world.reasons()[-2:] == ["InvalidSpec", "BlockedDeadlineExceeded"]
    given_back = world.events[-1]
    assert given_back.type == "Warning" and "blocked for progressDeadline 2m (InvalidSpec" in given_back.message
    assert world.status.releases[-1].outcome is models.Outcome.ROLLED_BACK
    assert stalled(world.status) == ("True", "InvalidSpec"), "the condition still names what to fix"
    for _ in range(5):
        blocked_tick(world, advance=60)
    assert world.reasons().count("InvalidSpec") == 1 and world.reasons().count("BlockedDeadlineExceeded") == 1
    assert world.canary_replicas == 0 and world.status.step is None
    assert world.status.releases[-1].restored_at is not None, "the traffic seen back on the primary is recorded"


def test_the_first_warning_says_how_long_the_canary_may_keep_its_weight() -> None:
    world = canary_at_first_step()
    blocked_tick(world)
    warning = world.events[-1]
    assert (warning.type, warning.reason) == ("Warning", "InvalidSpec")
    assert warning.message.startswith(INVALID)
    assert "keeps 10% of the traffic, unchecked, for at most progressDeadline 2m" in warning.message
    assert "goes back to the primary" in warning.message


def test_the_deadline_of_a_block_starts_when_the_block_begins_and_survives_a_change_of_cause() -> None:
    world = canary_at_first_step()
    blocked_tick(world, advance=90)
    blocked_tick(world, Reason.PROMETHEUS_NOT_ALLOWED, "address http://evil:9090 is not allowed", advance=31)
    assert world.reasons()[-2:] == ["InvalidSpec", "PrometheusNotAllowed"], "each cause told once"
    blocked_tick(world, Reason.PROMETHEUS_NOT_ALLOWED, "address http://evil:9090 is not allowed")
    assert world.status.phase is Phase.ROLLED_BACK, "two minutes blocked in all, whatever the cause"


def test_a_block_that_ends_before_the_deadline_restarts_the_clock_for_the_next_one() -> None:
    world = canary_at_first_step()
    blocked_tick(world, advance=110)
    world.tick()  # fixed: a full tick goes through
    assert world.status.blocked is None
    blocked_tick(world, advance=110)
    assert world.status.phase is Phase.PROGRESSING
    assert world.reasons().count("InvalidSpec") == 2


@pytest.mark.parametrize("hold", ["manual gate", "pause by request"])
def test_a_canary_waiting_for_a_person_is_bounded_too_while_blocked(hold: str) -> None:
    # No check runs while blocked, so nothing would catch a failing canary: a person's wait is bounded here too.
    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}]
    world = canary_at_first_step(steps=steps) if hold == "manual gate" else canary_at_first_step()
    if hold == "manual gate":
        world.run_checks(Verdict.PASS, limit=40)
        assert "waiting for annotation canary.dev/promote" in (world.status.message or "")
    else:
        world.request(models.Request.PAUSE)
        world.tick()
        assert world.status.hold is models.Hold.REQUEST
    blocked_tick(world, advance=121)
    blocked_tick(world)
    assert world.status.phase is Phase.ROLLED_BACK and world.canary_replicas == 0


def test_with_progress_deadline_abort_false_a_blocked_canary_is_held_and_told_once() -> None:
    world = canary_at_first_step(progressDeadlineAbort=False)
    for _ in range(4):
        blocked_tick(world, advance=60)
    assert world.status.phase is Phase.PAUSED and world.status.hold is models.Hold.DEADLINE
    assert world.canary_replicas == 1, "held at its weight, as the spec asks"
    assert world.reasons().count("BlockedDeadlineExceeded") == 1 and world.reasons().count("InvalidSpec") == 1
    assert stalled(world.status) == ("True", "InvalidSpec")


def test_a_promotion_blocked_past_the_deadline_puts_the_stable_template_back_on_the_primary() -> None:
    world = canary_at_first_step()
    world.run_checks(Verdict.PASS, until=Phase.PROMOTING, limit=300)
    assert world.primary_template == V2
    blocked_tick(world, advance=121)
    blocked_tick(world)
    assert world.status.phase is Phase.ROLLED_BACK
    assert world.primary_template == V1 and world.canary_replicas == 0


def test_a_spec_invalid_while_stable_touches_nothing_however_long() -> None:
    world = canary_at_first_step()
    world.run_checks(Verdict.PASS, until=Phase.SUCCEEDED, limit=300)
    world.tick()
    before = (world.primary, world.primary_template, world.canary_replicas, world.target_replicas)
    decisions = [blocked_tick(world, advance=3600) for _ in range(5)]
    assert world.status.phase is Phase.SUCCEEDED
    assert (world.primary, world.primary_template, world.canary_replicas, world.target_replicas) == before
    assert not any(d.status.blocked and d.status.blocked.gave_back for d in decisions)
    assert world.reasons().count("InvalidSpec") == 1


def test_without_a_spec_to_act_with_a_blocked_canary_is_only_held() -> None:
    # An object conflict (nothing may be written), or a status that recorded no spec (an older operator).
    world = canary_at_first_step()
    for _ in range(4):
        decision = rollouts.blocked(
            world.status, 1, Reason.OBJECT_CONFLICT, "Deployment web-canary is not ours", world.now
        )
        world.status = decision.status
        world.events.extend(decision.events)
        world.now += datetime.timedelta(minutes=5)
    assert world.status.phase is Phase.PROGRESSING
    assert world.reasons().count("ObjectConflict") == 1


def test_a_rollback_recorded_while_blocked_stays_recorded_through_a_tick_that_may_not_write() -> None:
    world = canary_at_first_step()
    blocked_tick(world, advance=121)
    blocked_tick(world)
    conflict = rollouts.blocked(world.status, 1, Reason.OBJECT_CONFLICT, "Deployment web-canary is not ours", world.now)
    assert conflict.status.blocked is not None and conflict.status.blocked.gave_back
    assert conflict.status.phase is Phase.ROLLED_BACK
    # What the next tick that may write does: no traffic to the canary (the router scales it to 0 next to a
    # primary of the target's 9), and the primary on the stable template at that size; nothing else.
    assert rollouts.give_back(conflict.status, world.observe(None)) == (
        rollouts.SetWeight(0, 9),
        rollouts.EnsurePrimary(V1, "rev-1.0", 9),
    )


def test_a_canary_whose_target_is_deleted_is_given_back_at_the_deadline_with_the_primary_untouched() -> None:
    world = canary_at_first_step()
    gone = observations.Observations(
        generation=1, target=None, primary=world.primary, canary=world.canary, traffic=observations.Traffic(10, True)
    )
    decisions = []
    for _ in range(125):
        decision = rollouts.reconcile(world.spec, world.status, gone, world.now)
        world.status = decision.status
        decisions.append(decision)
        for action in rollouts.derive(world.spec, world.status, gone):
            world.apply(action)
        world.events.extend(world.status.pending_events)
        world.status = world.status.model_copy(update={"pending_events": []})
        world.now += datetime.timedelta(seconds=1)
    assert world.status.phase is Phase.ROLLED_BACK
    assert world.canary_replicas == 0, "the traffic is back on the primary"
    assert world.primary_template == V1, "the primary keeps serving the stable revision"
    assert world.reasons().count("TargetNotFound") == 1 and world.reasons().count("BlockedDeadlineExceeded") == 1
    assert {type(a) for d in decisions for a in rollouts.derive(world.spec, d.status, gone)} <= {rollouts.SetWeight}


def test_the_recorded_spec_reads_back_as_the_spec_it_was() -> None:
    world = canary_at_first_step()
    assert world.status.applied_spec is not None
    assert models.parse_spec(world.status.applied_spec) == world.spec


# ---------------------------------------------------------------- bounded on main already (inconclusive checks)


@pytest.mark.parametrize("cause", ["QueryRejected", "PrometheusUnreachable"])
def test_a_bad_query_or_an_unreachable_prometheus_mid_canary_is_rolled_back_at_the_progress_deadline(
    cause: str,
) -> None:
    world = canary_at_first_step()
    for _ in range(200):
        if rollouts.needs(world.spec, world.status, None, world.now).check:
            check = record(Verdict.INCONCLUSIVE, at=world.now).model_copy(update={"cause": cause})
            world.tick(check)
        else:
            world.tick()
        if world.status.phase is Phase.ROLLED_BACK:
            break
    assert world.status.phase is Phase.ROLLED_BACK and world.canary_replicas == 0
    assert world.reasons().count("ProgressDeadlineExceeded") == 1
