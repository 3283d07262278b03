"""Gate webhooks as the state machine sees them: pre-rollout before a start, confirm-promotion before the primary.

The answers come in as observations (the I/O edge called the hooks the machine asked for), tick by tick.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

import helpers
from helpers import V1, V2, World, record

from canary_operator import gating, models, rollouts

Phase = models.Phase
Verdict = models.Verdict
PRE = models.WebhookType.PRE_ROLLOUT
CONFIRM = models.WebhookType.CONFIRM_PROMOTION


def world(*hooks: dict[str, Any]) -> World:
    raw = copy.deepcopy(helpers.example_rollout()["spec"])
    raw["analysis"]["interval"] = "10s"
    raw["webhooks"] = [{"url": "http://hooks.shop/", **hook} for hook in hooks]
    w = World(spec=models.parse_spec(raw), template=V1)
    w.tick()
    w.tick()
    return w


def asked(w: World) -> tuple[tuple[models.WebhookType, str], ...]:
    return rollouts.needs(w.spec, w.status, w.revision(w.template), w.now).gates


def answer(w: World, name: str, kind: models.WebhookType, is_open: bool, revision: str = "rev-2.0") -> None:
    w.gate_answers.append(
        models.GateRecord(
            name=name,
            type=kind.value,
            revision=revision,
            open=is_open,
            at=w.now.isoformat(),
            code=200 if is_open else 503,
            message="HTTP 200" if is_open else "HTTP 503: not yet",
        )
    )


def test_a_new_revision_waits_for_its_pre_rollout_gate_and_starts_once_it_opens() -> None:
    w = world({"name": "smoke", "type": "pre-rollout"})
    w.template = V2
    assert asked(w) == ((PRE, "rev-2.0"),)
    answer(w, "smoke", PRE, False)
    w.tick()
    assert w.status.phase is Phase.STABLE and w.canary_replicas == 0
    assert (
        w.status.message
        == "revision rev-2.0 not started: waiting for pre-rollout webhook(s): smoke (HTTP 503: not yet)"
    )
    assert asked(w) == (), "not asked again before an analysis interval has passed"
    w.now += datetime.timedelta(seconds=10)
    assert asked(w) == ((PRE, "rev-2.0"),)
    answer(w, "smoke", PRE, True)
    w.tick()
    assert w.status.phase is Phase.PROGRESSING and w.status.canary_revision == "rev-2.0"
    assert [g.name for g in w.status.gates] == ["smoke"] and w.status.gates[0].open


def test_a_pre_rollout_gate_shut_past_the_progress_deadline_is_reported_stalled_and_still_asked() -> None:
    w = world({"name": "smoke", "type": "pre-rollout"})
    w.template = V2
    for _ in range(70):  # progressDeadline defaults to 10m; the gate is asked every 10s
        if asked(w):
            answer(w, "smoke", PRE, False)
        w.tick(advance=10)
    stalled = next(c for c in w.status.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "WebhookRefused")
    assert (w.status.message or "").endswith("not open within progressDeadline 10m")
    assert w.reasons().count("WebhookRefused") == 1, "one Event for the transition, not one per tick"
    answer(w, "smoke", PRE, True)
    w.tick()
    assert w.status.phase is Phase.PROGRESSING


def test_a_refused_pre_rollout_gate_with_on_failure_fail_rejects_the_revision() -> None:
    w = world({"name": "smoke", "type": "pre-rollout", "onFailure": "fail"})
    w.template = V2
    answer(w, "smoke", PRE, False)
    w.tick()
    assert w.status.phase is Phase.STABLE and w.status.rejected_revision == "rev-2.0"
    assert "WebhookRefused" in w.reasons()
    stalled = next(c for c in w.status.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "WebhookRefused")
    assert asked(w) == (), "a rejected revision is not asked about again"


def run_to_last_step(w: World) -> None:
    for _ in range(200):
        due = rollouts.needs(w.spec, w.status, w.revision(w.template), w.now).check
        w.tick(record(Verdict.PASS, at=w.now) if due else None)
        if w.status.message and "confirm-promotion" in w.status.message:
            return
    raise AssertionError(f"never waited for confirmation: {w.status.phase} {w.status.message}")


def test_the_primary_is_not_touched_before_confirm_promotion_opens() -> None:
    w = world({"name": "change-board", "type": "confirm-promotion"})
    w.template = V2
    run_to_last_step(w)
    assert w.status.phase is Phase.PROGRESSING and w.status.step == "4/4"
    assert w.primary is not None and w.primary.revision == "rev-1.0"
    assert asked(w) == ((CONFIRM, "rev-2.0"),)
    answer(w, "change-board", CONFIRM, True)
    w.run_checks(Verdict.PASS, until=Phase.SUCCEEDED)
    assert w.status.phase is Phase.SUCCEEDED and w.primary.revision == "rev-2.0"


def refused_at_confirm_promotion() -> World:
    """rev-2.0 run to its last step, then refused by a confirm-promotion gate with onFailure fail."""
    w = world({"name": "change-board", "type": "confirm-promotion", "onFailure": "fail"})
    w.template = V2
    run_to_last_step(w)
    answer(w, "change-board", CONFIRM, False)
    w.tick()
    assert w.status.phase is Phase.ROLLED_BACK and w.status.rejected_revision == "rev-2.0"
    return w


def test_a_refused_confirm_promotion_with_on_failure_fail_rolls_back() -> None:
    w = refused_at_confirm_promotion()
    assert w.status.releases[-1].reason == "confirm-promotion webhook change-board refused: HTTP 503: not yet"


def test_a_failing_rollout_hook_fails_the_check_and_counts_towards_the_threshold() -> None:
    check = record(Verdict.PASS)
    failing = models.GateRecord(name="load", type="rollout", open=False, at=check.at, message="HTTP 500")
    folded = gating.with_hooks(check, [failing])
    assert folded.verdict is Verdict.FAIL and folded.reason == "rollout webhook load: HTTP 500"
    assert [m.name for m in folded.metrics] == ["error-rate", "webhook/load"]

    w = world({"name": "load", "type": "rollout"})
    w.template = V2
    for _ in range(60):
        due = rollouts.needs(w.spec, w.status, w.revision(w.template), w.now).check
        w.tick(gating.with_hooks(record(Verdict.PASS, at=w.now), [failing]) if due else None)
        if w.status.phase is Phase.ROLLED_BACK:
            break
    assert w.status.phase is Phase.ROLLED_BACK
    assert "rollout webhook load: HTTP 500" in (w.status.message or "")


def test_a_failing_rollout_hook_holds_a_step_the_no_harm_rule_would_have_cleared() -> None:
    # Low traffic: the metrics show no harm (cleared by passRule no-harm); the load test fails. Under
    # failureThreshold 2 one failed check does not roll back, and it must not advance the step either.
    cleared = record(Verdict.INCONCLUSIVE).model_copy(update={"cleared": True})
    failing = models.GateRecord(name="load", type="rollout", open=False, at=cleared.at, message="HTTP 500")
    folded = gating.with_hooks(cleared, [failing])
    assert folded.verdict is Verdict.FAIL
    assert folded.cleared is False, "a failed check is never one the step may advance on"

    w = world({"name": "load", "type": "rollout"})
    w.template = V2
    for _ in range(60):
        due = rollouts.needs(w.spec, w.status, w.revision(w.template), w.now).check
        check = cleared.model_copy(update={"at": w.now.isoformat()})
        w.tick(gating.with_hooks(check, [failing]) if due else None)
        if w.status.last_check is not None:
            break
    assert w.status.last_check is not None and w.status.last_check.verdict is Verdict.FAIL
    assert w.status.phase is Phase.PROGRESSING, "one failed check of two allowed"
    assert (w.status.current_step_index or 0) == 0, "the step holds"
    assert "StepAdvanced" not in w.reasons()


def test_a_rollback_hook_that_answers_2xx_rolls_back_at_once() -> None:
    check = record(Verdict.PASS)
    trigger = models.GateRecord(name="cleanup", type="rollback", open=True, at=check.at, message="HTTP 200")
    folded = gating.with_hooks(check, [trigger])
    assert folded.verdict is Verdict.FAIL
    streaks = rollouts.checks.fold_failures(helpers.example_spec().analysis, {}, folded)
    assert streaks["webhook/cleanup"] == 2, "the whole failure streak at once"
    quiet = gating.with_hooks(check, [trigger.model_copy(update={"open": False})])
    assert quiet.verdict is Verdict.PASS, "a rollback hook that says no asks for nothing"


def test_a_retried_release_counts_its_pre_rollout_deadline_from_that_gate_s_first_question() -> None:
    """A confirm-promotion refused rev-2.0 long ago; the team adds a pre-rollout gate and retries rev-2.0. The
    old confirm-promotion answer about the same revision does not make the new gate's wait overdue at once."""
    w = refused_at_confirm_promotion()
    raw = w.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["webhooks"].append({"name": "smoke", "type": "pre-rollout", "url": "http://hooks.shop/"})
    w.spec = models.parse_spec(raw)
    w.now += datetime.timedelta(hours=1)  # well past progressDeadline (10m) since change-board was asked
    refused = w.reasons().count("WebhookRefused")
    w.request(models.Request.RETRY)
    w.tick()
    assert w.status.message == "revision rev-2.0 not started: waiting for pre-rollout webhook(s): smoke (not asked yet)"
    assert w.reasons().count("WebhookRefused") == refused, "not stalled before the gate was even asked"
    assert asked(w) == ((PRE, "rev-2.0"),)
    answer(w, "smoke", PRE, False)
    first = w.now
    w.tick(advance=0)
    w.now = first + datetime.timedelta(minutes=10)
    w.tick(advance=0)
    assert w.reasons().count("WebhookRefused") == refused, "at the deadline itself it has not passed"
    w.now += datetime.timedelta(seconds=1)
    w.tick()
    assert w.reasons().count("WebhookRefused") == refused + 1
    assert (w.status.message or "").endswith("not open within progressDeadline 10m")


def test_a_gate_is_asked_at_once_then_one_interval_after_its_last_question_and_not_once_open() -> None:
    hooks = [models.Webhook.model_validate({"name": "smoke", "type": "pre-rollout", "url": "http://hooks.shop/"})]
    now = helpers.T0
    shut = models.GateRecord(name="smoke", type=PRE.value, revision="rev-2.0", open=False, at=now.isoformat())
    assert gating.next_ask_at(hooks, PRE, [], "rev-2.0", now, 10) == now, "never asked: at once"
    assert gating.next_ask_at(hooks, PRE, [shut], "rev-2.0", now, 10) == now + datetime.timedelta(seconds=10)
    assert gating.next_ask_at(hooks, PRE, [shut], "rev-3.0", now, 10) == now, "asked about another revision only"
    opened = shut.model_copy(update={"open": True})
    assert gating.next_ask_at(hooks, PRE, [opened], "rev-2.0", now, 10) is None
    assert gating.next_ask_at([], PRE, [], "rev-2.0", now, 10) is None, "no hook, nothing to ask"


def test_a_gate_was_first_asked_when_its_own_hooks_first_were_about_that_revision() -> None:
    t = helpers.T0
    mine = models.GateRecord(
        name="smoke", type=PRE.value, revision="rev-2.0", open=False, at=(t + datetime.timedelta(minutes=5)).isoformat()
    )
    assert gating.first_asked([mine], PRE, "rev-2.0") == t + datetime.timedelta(minutes=5)
    since = mine.model_copy(update={"since": t.isoformat()})
    assert gating.first_asked([since], PRE, "rev-2.0") == t, "since: when the hook was first asked"
    other = models.GateRecord(
        name="board",
        type=CONFIRM.value,
        revision="rev-2.0",
        open=False,
        at=(t - datetime.timedelta(hours=1)).isoformat(),
    )
    assert gating.first_asked([since, other], PRE, "rev-2.0") == t, "another gate's answers do not count"
    assert gating.first_asked([since], PRE, "rev-3.0") is None
