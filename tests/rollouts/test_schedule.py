"""When a rollout's loop must tick next (``rollouts.schedule``), phase by phase, and that ticking only then decides
what ticking every second decides.

The loop sleeps until the next due time the state machine computes (or until a change wakes it); if that time
were late, a check, a pause's end or a rollback would come late. So the due times are pinned against the
functions that compare the clock (they flip exactly there), and the whole machine is driven twice through the
same releases, once every second and once only at the due times and on changes: same transitions, never later.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

import helpers
import pytest
from helpers import T0, V1, V2, World, record

from canary_operator import models, observations, rollouts
from canary_operator.rollouts import checks, deadlines, schedule

Phase = models.Phase
Verdict = models.Verdict
CONFIRM = models.WebhookType.CONFIRM_PROMOTION
PRE = models.WebhookType.PRE_ROLLOUT
SECOND = datetime.timedelta(seconds=1)
TICK, IDLE = 1.0, 30.0


def spec(**changes: Any) -> models.CanaryRolloutSpec:
    """The example (10% / pause 30s / 50% / pause 30s, checks every 10s, continuous every 15s), with changes."""
    raw = copy.deepcopy(helpers.example_rollout()["spec"])
    analysis = changes.pop("analysis", {})
    raw["analysis"].update({"interval": "10s", **analysis})
    raw.update(changes)
    return models.parse_spec(raw)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def text(seconds: float) -> str:
    return at(seconds).isoformat()


def status(phase: Phase | None, **fields: Any) -> models.CanaryRolloutStatus:
    base: dict[str, Any] = {"phase": phase, "stable_revision": "rev-1.0"}
    if phase in models.EXPOSED_PHASES:
        base |= {"canary_revision": "rev-2.0", "canary_started_at": text(0), "step_started_at": text(0)}
    return models.CanaryRolloutStatus(**(base | fields))


def gate(kind: models.WebhookType, asked: float, since: float | None = None, revision: str = "rev-2.0") -> Any:
    return models.GateRecord(
        name="board",
        type=kind.value,
        revision=revision,
        open=False,
        at=text(asked),
        since=text(since) if since is not None else None,
        message="HTTP 503",
    )


# ---------------------------------------------------------------- due times, phase by phase


def test_an_idle_rollout_has_nothing_due_and_sleeps_the_idle_resync() -> None:
    for phase in models.IDLE_PHASES:
        due = rollouts.next_due(spec(), status(phase), at(0), "rev-1.0")
        assert due == rollouts.Due(None, "", phase)
        assert rollouts.wait(due, at(0), at(0), TICK, IDLE) == rollouts.Wait(IDLE, "resync")


def test_a_takeover_waits_on_the_primary_until_its_progress_deadline() -> None:
    due = rollouts.next_due(spec(), status(Phase.INITIALIZING, last_progress_at=text(0)), at(3))
    assert due == rollouts.Due(at(600), "deadline", Phase.INITIALIZING)


def test_a_canary_not_yet_at_its_weight_has_no_check_due_only_the_continuous_test_and_the_deadline() -> None:
    progressing = status(Phase.PROGRESSING, last_progress_at=text(0))
    assert rollouts.next_due(spec(), progressing, at(1)) == rollouts.Due(at(15), "continuous", Phase.PROGRESSING)
    quiet = spec(analysis={"continuous": False})
    assert rollouts.next_due(quiet, progressing, at(1)) == rollouts.Due(at(600), "deadline", Phase.PROGRESSING)


def test_the_first_check_is_due_one_interval_after_the_weight_settled_then_one_after_each_check() -> None:
    quiet = spec(analysis={"continuous": False})
    settled = status(Phase.PROGRESSING, last_progress_at=text(2), weight_settled_at=text(2))
    assert rollouts.next_due(quiet, settled, at(3)) == rollouts.Due(at(12), "check", Phase.PROGRESSING)
    checked = settled.model_copy(update={"last_check_at": text(12.5)})
    assert rollouts.next_due(quiet, checked, at(12.5)) == rollouts.Due(at(22.5), "check", Phase.PROGRESSING)


def test_the_continuous_test_counts_from_its_last_reading_whatever_the_checks() -> None:
    slow = spec(analysis={"interval": "1m"})
    read = status(Phase.PROGRESSING, weight_settled_at=text(2), evidence=_evidence(40))
    assert rollouts.next_due(slow, read, at(40)) == rollouts.Due(at(55), "continuous", Phase.PROGRESSING)
    checked = read.model_copy(update={"last_check_at": text(50)})
    assert rollouts.next_due(slow, checked, at(50)) == rollouts.Due(at(55), "continuous", Phase.PROGRESSING)


def test_a_rollout_paused_by_request_keeps_checking_and_has_no_deadline() -> None:
    quiet = spec(analysis={"continuous": False})
    held = status(Phase.PAUSED, hold=models.Hold.REQUEST, last_check_at=text(30), last_progress_at=text(0))
    assert rollouts.next_due(quiet, held, at(31)) == rollouts.Due(at(40), "check", Phase.PAUSED)
    held_long = held.model_copy(update={"last_check_at": text(900)})
    assert rollouts.next_due(quiet, held_long, at(901)).what == "check", "no progress deadline while a person holds"


def test_a_rollout_held_for_inconclusive_checks_is_bounded_by_its_progress_deadline() -> None:
    quiet = spec(analysis={"continuous": False, "interval": "1h"}, progressDeadline="5m")
    held = status(Phase.PAUSED, hold=models.Hold.INCONCLUSIVE, last_check_at=text(60), last_progress_at=text(20))
    assert rollouts.next_due(quiet, held, at(61)) == rollouts.Due(at(320), "deadline", Phase.PAUSED)


def test_a_promotion_waits_on_the_primary_until_its_deadline_then_the_loop_ticks_as_it_cannot_tell() -> None:
    promoting = status(Phase.PROMOTING, last_progress_at=text(0))
    assert rollouts.next_due(spec(), promoting, at(10)) == rollouts.Due(at(600), "deadline", Phase.PROMOTING)
    past = rollouts.next_due(spec(), promoting, at(601))
    assert past == rollouts.Due(None, "", Phase.PROMOTING), (
        "a deadline that passed was acted on by the tick that saw it"
    )
    assert rollouts.wait(past, at(601), at(601), TICK, IDLE) == rollouts.Wait(TICK, "unsure")


def test_a_canary_whose_target_is_gone_gives_its_traffic_back_at_the_deadline_of_the_block() -> None:
    quiet = spec(analysis={"continuous": False, "interval": "1h"}, progressDeadline="2m")
    block = models.Block(reason=models.Reason.TARGET_NOT_FOUND, message="Deployment web not found", since=text(100))
    blocked = status(Phase.PROGRESSING, last_progress_at=text(250), weight_settled_at=text(0), blocked=block)
    assert rollouts.next_due(quiet, blocked, at(101)) == rollouts.Due(at(220), "deadline", Phase.PROGRESSING)
    assert rollouts.next_due(quiet, blocked, at(225)) == rollouts.Due(at(370), "deadline", Phase.PROGRESSING), (
        "passed: the tick that saw it acted; the progress deadline is next"
    )


def test_a_waiting_confirm_promotion_gate_is_asked_again_one_interval_after_its_last_answer() -> None:
    gated = spec(analysis={"continuous": False, "interval": "1m"}, webhooks=[_hook("confirm-promotion")])
    last = status(
        Phase.PROGRESSING,
        current_step_index=3,
        weight_settled_at=text(0),
        last_check_at=text(0),
        step_started_at=text(0),
    )
    assert rollouts.next_due(gated, last, at(1)).what == "gate", "never asked: due at once"
    assert rollouts.next_due(gated, last, at(1)).at == at(1)
    asked = last.model_copy(update={"gates": [gate(CONFIRM, 5)]})
    assert rollouts.next_due(gated, asked, at(6)) == rollouts.Due(at(30), "pause", Phase.PROGRESSING)
    paused_over = asked.model_copy(update={"step_started_at": text(-60), "last_check_at": text(30)})
    assert rollouts.next_due(gated, paused_over, at(31)) == rollouts.Due(at(65), "gate", Phase.PROGRESSING)


def test_a_waiting_pre_rollout_gate_is_asked_every_interval_and_its_deadline_is_due() -> None:
    gated = spec(webhooks=[_hook("pre-rollout")], progressDeadline="55s")
    stable = status(Phase.STABLE, gates=[gate(PRE, 50, since=0)])
    assert rollouts.next_due(gated, stable, at(51), "rev-2.0") == rollouts.Due(at(55), "deadline", Phase.STABLE)
    assert rollouts.next_due(gated, stable, at(61), "rev-2.0") == rollouts.Due(at(60), "gate", Phase.STABLE)
    assert rollouts.next_due(gated, stable, at(51), "rev-1.0") == rollouts.Due(None, "", Phase.STABLE), (
        "the target back at the stable revision: nothing waits"
    )


# ---------------------------------------------------------------- due times are exactly where the machine looks


def _edges(found: rollouts.Due) -> tuple[datetime.datetime, datetime.datetime]:
    assert found.at is not None
    return found.at - datetime.timedelta(microseconds=1), found.at


@pytest.mark.parametrize(
    "recorded",
    [
        status(Phase.PROGRESSING, weight_settled_at=text(2)),
        status(Phase.PROGRESSING, weight_settled_at=text(2), last_check_at=text(13.25)),
        status(Phase.PAUSED, hold=models.Hold.REQUEST, last_check_at=text(7.5)),
        status(Phase.PAUSED, hold=models.Hold.INCONCLUSIVE),
    ],
)
def test_a_check_falls_due_exactly_at_the_time_given(recorded: models.CanaryRolloutStatus) -> None:
    quiet = spec(analysis={"continuous": False}, progressDeadline="1h")
    found = rollouts.next_due(quiet, recorded, at(1))
    before, then = _edges(found)
    assert found.what == "check"
    assert not checks.due(quiet, recorded, before) and checks.due(quiet, recorded, then)


def test_the_continuous_test_falls_due_exactly_at_the_time_given() -> None:
    slow = spec(analysis={"interval": "5m"})
    for recorded in (
        status(Phase.PROGRESSING),
        status(Phase.PROGRESSING, evidence=_evidence(31.5)),
        status(Phase.PROGRESSING, evidence=_evidence(31.5), weight_settled_at=text(2), last_check_at=text(33.25)),
    ):
        found = rollouts.next_due(slow, recorded, at(1))
        before, then = _edges(found)
        assert found.what == "continuous"
        assert not checks.continuous_due(slow, recorded, before) and checks.continuous_due(slow, recorded, then)


def test_a_gate_falls_due_exactly_at_the_time_given() -> None:
    gated = spec(webhooks=[_hook("pre-rollout")])
    stable = status(Phase.STABLE, gates=[gate(PRE, 50.5)])
    found = rollouts.next_due(gated, stable, at(51), "rev-2.0")
    before, then = _edges(found)
    assert rollouts.needs(gated, stable, "rev-2.0", before).gates == ()
    assert rollouts.needs(gated, stable, "rev-2.0", then).gates == ((PRE, "rev-2.0"),)


def _told(
    recorded: models.CanaryRolloutStatus, rollout: models.CanaryRolloutSpec, when: datetime.datetime, target: bool
) -> list[str]:
    """The Events one tick tells at ``when``, the target at rev-2.0 (or gone) and nothing else happening."""
    seen = observations.Observations(
        generation=1,
        target=observations.Target("rev-2.0", V2, 0) if target else None,
        traffic=observations.Traffic(recorded.weight, True),
    )
    return [str(e.reason) for e in rollouts.reconcile(rollout, recorded, seen, when).events]


def test_a_progress_deadline_passes_exactly_after_the_time_given() -> None:
    taking_over = status(Phase.INITIALIZING, last_progress_at=text(0))
    found = rollouts.next_due(spec(), taking_over, at(3), "rev-1.0")
    assert (found.at, found.what) == (at(600), "deadline")
    assert deadlines.progress_at(spec(), taking_over) == found.at
    assert _told(taking_over, spec(), at(600), target=True) == [], "at the deadline itself it has not passed"
    after = at(600) + datetime.timedelta(microseconds=1)
    assert _told(taking_over, spec(), after, target=True) == ["ProgressDeadlineExceeded"]


def test_a_timed_pause_ends_exactly_at_the_time_given_even_between_checks() -> None:
    slow = spec(analysis={"interval": "1m", "continuous": False})
    pausing = status(
        Phase.PROGRESSING,
        current_step_index=1,
        step_started_at=text(70),
        weight_settled_at=text(5),
        last_check_at=text(70),
        last_check=record(Verdict.PASS, at=at(70)),
        last_progress_at=text(70),
    )
    found = rollouts.next_due(slow, pausing, at(71))
    assert found == rollouts.Due(at(100), "pause", Phase.PROGRESSING), "the pause's end, not the next check at 130"
    seen = observations.Observations(
        generation=1,
        target=observations.Target("rev-2.0", V2, 0),
        canary=observations.Workload("rev-2.0", 1, 1, 1),
        traffic=observations.Traffic(10, True),
    )
    before, then = _edges(found)
    assert rollouts.reconcile(slow, pausing, seen, before).status.current_step_index == 1
    assert rollouts.reconcile(slow, pausing, seen, then).status.current_step_index == 2


def test_a_blocked_canary_gives_its_traffic_back_exactly_after_the_time_given() -> None:
    quiet = spec(analysis={"continuous": False, "interval": "1h"}, progressDeadline="2m")
    block = models.Block(reason=models.Reason.TARGET_NOT_FOUND, message="Deployment web not found", since=text(100))
    blocked = status(
        Phase.PROGRESSING,
        last_progress_at=text(250),
        weight=10,
        blocked=block,
        message=block.message,
        observed_generation=1,
    )  # told when it began
    found = rollouts.next_due(quiet, blocked, at(101))
    assert (found.at, found.what) == (at(220), "deadline")
    assert _told(blocked, quiet, at(220), target=False) == []
    after = at(220) + datetime.timedelta(microseconds=1)
    assert _told(blocked, quiet, after, target=False) == ["BlockedDeadlineExceeded"]


def test_a_pre_rollout_gate_stalls_exactly_after_the_time_given_counting_its_own_questions_only() -> None:
    gated = spec(webhooks=[_hook("pre-rollout")], progressDeadline="55s")
    confirmed_long_ago = gate(CONFIRM, -3600, since=-3600).model_copy(update={"name": "change-board"})
    waiting = status(Phase.STABLE, gates=[gate(PRE, 50, since=0), confirmed_long_ago])
    found = rollouts.next_due(gated, waiting, at(51), "rev-2.0")
    assert found == rollouts.Due(at(55), "deadline", Phase.STABLE)
    assert _told(waiting, gated, at(55), target=True) == [], "an earlier confirm-promotion answer does not count"
    after = at(55) + datetime.timedelta(microseconds=1)
    assert _told(waiting, gated, after, target=True) == ["WebhookRefused"]


# ---------------------------------------------------------------- the loop's sleep


def test_the_sleep_ends_just_after_the_due_time_within_floor_and_resync() -> None:
    def sleep(due_in: float, since_decided: float = 0.0) -> rollouts.Wait:
        due = rollouts.Due(at(due_in), "check", Phase.PROGRESSING)
        return rollouts.wait(due, at(0), at(since_decided), TICK, IDLE)

    assert sleep(4) == rollouts.Wait(4 + schedule.MARGIN_SECONDS, "check")
    assert sleep(4, since_decided=0.5) == rollouts.Wait(3.5 + schedule.MARGIN_SECONDS, "check"), "from the clock now"
    assert sleep(0.001) == rollouts.Wait(schedule.FLOOR_SECONDS, "check"), "never a tight loop"
    assert sleep(0.3, since_decided=0.5).seconds == schedule.FLOOR_SECONDS, "fell due during the tick: at once"
    assert sleep(45) == rollouts.Wait(IDLE, "resync"), "never longer than the idle resync"


def test_the_loop_ticks_every_tick_seconds_when_it_cannot_tell() -> None:
    assert rollouts.wait(None, at(0), at(0), TICK, IDLE) == rollouts.Wait(TICK, "retry"), "the tick decided nothing"
    overdue = rollouts.Due(at(0), "check", Phase.PROGRESSING)
    assert rollouts.wait(overdue, at(0), at(0.2), TICK, IDLE) == rollouts.Wait(TICK, "overdue"), (
        "due at the tick and not done by it (blocked): as often as before, no faster"
    )
    blocked = rollouts.nothing_due(status(Phase.PROGRESSING))
    assert rollouts.wait(blocked, at(0), at(0), TICK, IDLE) == rollouts.Wait(TICK, "unsure")
    assert rollouts.wait(rollouts.nothing_due(status(Phase.STABLE)), at(0), at(0), TICK, IDLE).until == "resync"


def test_a_decision_carries_its_due_time() -> None:
    world = World(spec=spec(), template=V1)
    world.tick()
    world.tick()
    world.template = V2
    decision = world.tick()
    assert decision.due == rollouts.next_due(world.spec, decision.status, world.now - SECOND, "rev-2.0")
    assert decision.due is not None and decision.due.busy


# ---------------------------------------------------------------- the whole machine, every second or only when due


@dataclasses.dataclass(frozen=True)
class Run:
    """What a person would notice of one release: the Events in order, with their times, and the end state."""

    events: list[tuple[str, datetime.datetime]]
    phase: Phase | None
    ticks: int


def _evidence(seconds: float, verdict: Verdict = Verdict.PASS) -> models.EvidenceRecord:
    return models.EvidenceRecord(at=text(seconds), verdict=verdict, reason="evidence", metrics=[])


def _hook(kind: str) -> dict[str, Any]:
    return {"name": "board", "type": kind, "url": "http://hooks.shop/"}


Verdicts = Callable[[models.CanaryRolloutStatus], Verdict]  # what the canary shows, by where the release is


def drive(
    world: World,
    checks_say: Verdicts,
    evidence_says: Verdicts,
    *,
    due_only: bool,
    seconds: float = 400,
    gate_opens_at_question: int | None = None,
) -> Run:
    """Run the release of V2 for ``seconds``: a tick every second, or only at the due times and on changes.

    As the I/O edge does, a check, a continuous reading or a gate answer is handed in when ``needs`` asks for
    it. A change of what the tick observes (a Deployment the operator just scaled, a request annotation
    removed) wakes the due-time loop as the watch does, a moment later; a status write does not (``caching``);
    otherwise the loop sleeps as ``rollouts.wait`` says.
    """
    world.template = V2
    started, end = world.now, world.now + datetime.timedelta(seconds=seconds)
    ticks = questions = 0
    while world.now < end and world.status.phase not in (Phase.SUCCEEDED, Phase.ROLLED_BACK):
        needs = rollouts.needs(world.spec, world.status, world.revision(world.template), world.now)
        for kind, revision in needs.gates:
            questions += 1
            opened = gate_opens_at_question is not None and questions >= gate_opens_at_question
            world.gate_answers.append(
                models.GateRecord(
                    name="board", type=kind.value, revision=revision, open=opened, at=world.now.isoformat()
                )
            )
        check = record(checks_say(world.status), at=world.now) if needs.check else None
        since_t0 = (world.now - T0).total_seconds()
        reading = _evidence(since_t0, evidence_says(world.status)) if needs.continuous else None
        seen_before = world.observe(None)
        decided_at = world.now
        decision = world.tick(check, advance=0, evidence=reading)
        ticks += 1
        if not due_only:
            world.now = decided_at + SECOND
            continue
        woken = _cluster(world.observe(None)) != _cluster(seen_before)
        wait = rollouts.wait(decision.due, decided_at, decided_at, TICK, IDLE)
        world.now = decided_at + datetime.timedelta(seconds=0.02 if woken else wait.seconds)
    told = [(str(e.reason), datetime.datetime.fromisoformat(e.at)) for e in world.events]
    events = [(reason, when) for reason, when in told if when >= started]
    return Run(events, world.status.phase, ticks)


def _cluster(seen: observations.Observations) -> tuple[Any, ...]:
    """What a watch reports of an observation: the Deployments and the annotations (not the router's verdict on
    them, which follows from the status as well: the weight it is asked about)."""
    return seen.target, seen.primary, seen.canary, seen.requests


def stable_world(rollout: models.CanaryRolloutSpec) -> World:
    world = World(spec=rollout, template=V1)
    world.tick()
    world.tick()
    assert world.status.phase is Phase.STABLE
    world.now += datetime.timedelta(seconds=0.37)  # off the one-second grid, as a real release is
    return world


def always(verdict: Verdict) -> Verdicts:
    return lambda _: verdict


def from_step(index: int, before: Verdict, after: Verdict) -> Verdicts:
    """Good at the first weight, bad from step ``index`` on (at 50% the canary's load shows a defect)."""
    return lambda recorded: after if (recorded.current_step_index or 0) >= index else before


RELEASES: dict[str, tuple[dict[str, Any], Verdicts, Verdicts, Phase]] = {
    "promoted through two weights and two pauses": ({}, always(Verdict.PASS), always(Verdict.PASS), Phase.SUCCEEDED),
    "rolled back after two failed checks": (
        {"analysis": {"continuous": False}},
        always(Verdict.FAIL),
        always(Verdict.PASS),
        Phase.ROLLED_BACK,
    ),
    "rolled back by the continuous test between checks": (
        {"analysis": {"interval": "1m"}},
        always(Verdict.PASS),
        from_step(2, Verdict.PASS, Verdict.FAIL),
        Phase.ROLLED_BACK,
    ),
    "rolled back at the progress deadline after inconclusive checks": (
        {"progressDeadline": "95s"},  # not a multiple of the interval: a check does not bring it
        always(Verdict.INCONCLUSIVE),
        always(Verdict.PASS),
        Phase.ROLLED_BACK,
    ),
    "failing at the second weight after passing the first": (
        {},
        from_step(2, Verdict.PASS, Verdict.FAIL),
        always(Verdict.PASS),
        Phase.ROLLED_BACK,
    ),
}


@pytest.mark.parametrize("name", list(RELEASES))
def test_ticking_only_when_due_decides_the_same_as_ticking_every_second_and_never_later(name: str) -> None:
    changes, checks_say, evidence_says, outcome = RELEASES[name]
    every_second = drive(stable_world(spec(**changes)), checks_say, evidence_says, due_only=False)
    when_due = drive(stable_world(spec(**changes)), checks_say, evidence_says, due_only=True)
    assert every_second.phase is when_due.phase is outcome
    assert [reason for reason, _ in when_due.events] == [reason for reason, _ in every_second.events]
    for (reason, due_time), (_, second_time) in zip(when_due.events, every_second.events, strict=True):
        assert due_time <= second_time + SECOND, f"{reason} later than one tick: {due_time} vs {second_time}"
    assert when_due.ticks * 2 < every_second.ticks, (
        f"{when_due.ticks} ticks when due, {every_second.ticks} every second"
    )


def test_a_confirm_promotion_gate_is_asked_at_the_interval_and_promotes_as_soon_as_ticking_every_second_does() -> None:
    gated = spec(webhooks=[_hook("confirm-promotion")])
    runs = [
        drive(
            stable_world(gated), always(Verdict.PASS), always(Verdict.PASS), due_only=due_only, gate_opens_at_question=3
        )
        for due_only in (False, True)
    ]
    assert runs[0].phase is runs[1].phase is Phase.SUCCEEDED
    assert [r for r, _ in runs[1].events] == [r for r, _ in runs[0].events]
    waiting, promoting = (
        [next(t for r, t in run.events if r == reason) for run in runs] for reason in ("StepAdvanced", "Promoting")
    )
    assert promoting[1] <= promoting[0] + SECOND
    assert promoting[1] - waiting[1] >= datetime.timedelta(seconds=20), "asked once per interval, not every tick"
