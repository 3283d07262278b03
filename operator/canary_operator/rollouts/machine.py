"""The rollout state machine: ``(spec, status, observations, now) -> Decision``.

Pure: no Kubernetes, no Prometheus, no clock of its own. It records transitions and their intent in the
next status (see ``actions`` for how the intent becomes actions, and ``docs/design.md`` for the
record-then-act protocol); it never acts. Each phase has one function here; checks, requests, the
error budget and the conditions have their own modules.
"""

from __future__ import annotations

import datetime

from canary_operator import gating, models, observations
from canary_operator.rollouts import budget, checks, conditions, deadlines, drafting, plan, requests, schedule

Phase = models.Phase
Reason = models.Reason
Normal = models.EventType.NORMAL
Warning = models.EventType.WARNING
Verdict = models.Verdict


def reconcile(
    spec: models.CanaryRolloutSpec,
    status: models.CanaryRolloutStatus,
    obs: observations.Observations,
    now: datetime.datetime,
) -> drafting.Decision:
    tick = drafting.Tick(spec, status, obs, now)
    tick.status.reconcile_errors = 0
    # What a later tick gives the traffic back with, should this spec become invalid or its route unusable.
    tick.status.applied_spec = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    target = obs.target
    if target is None:
        _block(tick, Reason.TARGET_NOT_FOUND, f"Deployment {spec.target_ref.name} not found", "nothing to release")
        _note_restored(tick)
    else:
        if status.blocked is not None:
            tick.status.blocked = None
            if status.message == status.blocked.message:  # the message of what blocked it no longer holds
                tick.status.message = f"no longer blocked ({status.blocked.reason})"
        # The Deployment taken over, recorded at first sight (or now, in a status an older operator wrote); a spec
        # that names another one is refused before the machine runs (``reconciling``).
        tick.status.target = tick.status.target or tick.target_name
        for answer in obs.gates:
            tick.status.gates = gating.record(tick.status.gates, answer)
        requests.note_cleared(tick)
        request = requests.pending(tick)
        if tick.status.phase is None or tick.status.phase is Phase.INITIALIZING:
            _initialize(tick, target)
        else:
            _follow_target_replicas(tick, target)
            if request is not None and _act_on_request(tick, target, request):
                request = None
            phase = tick.status.phase
            if phase in models.IDLE_PHASES:
                request = _idle(tick, target, request)
            elif phase in models.ANALYSING_PHASES:
                request = _analyse(tick, target, request)
            elif phase is Phase.PROMOTING:
                _promote(tick, target)
        if request is not None:
            requests.ignore(tick, request, _nothing_waiting(tick))
        _autoscaler(tick)
    tick.status.weight = obs.traffic.weight
    tick.status.observed_generation = obs.generation
    tick.status.step = models.step_label(tick.status.phase, tick.status.current_step_index, len(spec.steps))
    tick.status.conditions = conditions.derive(tick)
    # When the clock next brings something to do, from what is now decided: the loop sleeps until then.
    tick.due = schedule.next_due(spec, tick.status, now, target.revision if target is not None else None)
    return tick.decision()


def _autoscaler(tick: drafting.Tick) -> None:
    """A Warning Event when the user's HPA stops being (or cannot be) carried over to the primary, once."""
    problem = tick.obs.autoscaler_problem
    if problem is None:
        return
    before = next((c for c in tick.old.conditions if c.type == conditions.AUTOSCALED), None)
    if before is None or before.status != "False" or before.reason != problem[0]:
        tick.event(Warning, problem[0], problem[1])


def blocked(
    status: models.CanaryRolloutStatus,
    generation: int,
    reason: Reason,
    message: str,
    now: datetime.datetime,
    spec: models.CanaryRolloutSpec | None = None,
    weight: int | None = None,
) -> drafting.Decision:
    """Progress is impossible until the user acts (invalid spec, a route or Prometheus refused): say why, once.

    ``spec`` bounds a blocked canary: its progressDeadline and progressDeadlineAbort (the current spec when it is
    valid, else the one last acted with). Without it (an object conflict, where nothing may be written, or a status
    that recorded no spec) the rollout is only held. ``weight`` is the canary's share observed this tick, if read.
    """
    if spec is None:
        draft = status.model_copy(deep=True)
        events = []
        if _new_block(status, generation, reason, message):
            events.append(drafting.add_event(draft, Warning, reason, message, now))
        draft.blocked = _block_record(status.blocked, reason, message, now)
        draft.message = message
        draft.observed_generation = generation
        draft.conditions = conditions.blocked(status.conditions, reason, message, generation, now)
        return drafting.Decision(draft, tuple(events))
    traffic = observations.Traffic(status.weight if weight is None else weight, weight is not None)
    tick = drafting.Tick(
        spec, status, observations.Observations(generation=generation, target=None, traffic=traffic), now
    )
    _block(tick, reason, message)
    if weight is not None:
        _note_restored(tick)
    tick.status.weight = traffic.weight
    tick.status.observed_generation = generation
    if tick.status.phase not in models.EXPOSED_PHASES:
        tick.status.step = None
    tick.status.conditions = conditions.derive(tick)
    return tick.decision()


def _block_record(before: models.Block | None, reason: Reason, message: str, now: datetime.datetime) -> models.Block:
    """The block in force from now: it began with the block before, if any (its deadline counts from there), and
    a rollback already recorded stays recorded: it is carried out again once the router can be used."""
    if before is None:
        return models.Block(reason=reason, message=message, since=now.isoformat())
    return models.Block(reason=reason, message=message, since=before.since, gave_back=before.gave_back)


def _new_block(status: models.CanaryRolloutStatus, generation: int, reason: Reason, message: str) -> bool:
    """A block not told yet: another cause, or another edit of the spec."""
    before = status.blocked
    if before is None:
        return status.observed_generation != generation or status.message != message  # recorded by an older operator
    return (before.reason, before.message) != (reason, message) or status.observed_generation != generation


def _block(tick: drafting.Tick, reason: Reason, message: str, idle: str = "") -> None:
    """Progress is impossible until someone acts: a condition and one Warning Event say why.

    While idle nothing is touched. A canary under way is not left serving for good: no check runs while it is
    blocked, so once progressDeadline has passed since the block began (a manual gate or a pause by request
    included) the rollout gives its traffic back to the primary, reason BlockedDeadlineExceeded, or holds with
    progressDeadlineAbort false. What a rollback then does is derived from the recorded status (``gave_back``).
    """
    status, old = tick.status, tick.old
    status.blocked = _block_record(old.blocked, reason, message, tick.now)
    exposed = status.phase in models.EXPOSED_PHASES
    deadline = tick.spec.progress_deadline
    if _new_block(old, tick.obs.generation, reason, message):
        if exposed:
            then = "its traffic goes back to the primary" if tick.spec.progress_deadline_abort else "it is held"
            note = (
                f"revision {status.canary_revision} keeps {status.weight}% of the traffic, unchecked, for at most"
                f" progressDeadline {deadline}; then {then}"
            )
        else:
            note = idle
        tick.event(Warning, reason, f"{message}; {note}" if note else message)
    status.message = message
    tick.stalled = (reason, message)
    if not deadlines.passed(deadlines.blocked_at(tick.spec, status), tick.now):
        return
    _deadline(
        tick,
        f"blocked for progressDeadline {deadline} ({reason}: {message})",
        Reason.BLOCKED_DEADLINE_EXCEEDED,
    )
    if status.phase is Phase.ROLLED_BACK:
        status.blocked = status.blocked.model_copy(update={"gave_back": True})
    tick.stalled = (reason, status.message)


RECONCILE_ERRORS_TO_STALL = 3


def failed(
    status: models.CanaryRolloutStatus, generation: int, error: str, now: datetime.datetime
) -> drafting.Decision:
    """A tick failed (an exception, an API refusal): after a few in a row, say so; the next good tick clears it."""
    draft = status.model_copy(deep=True)
    draft.reconcile_errors = status.reconcile_errors + 1
    events = []
    if draft.reconcile_errors == RECONCILE_ERRORS_TO_STALL:
        message = f"{RECONCILE_ERRORS_TO_STALL} ticks in a row failed: {error}"
        events.append(
            drafting.add_event(draft, Warning, Reason.RECONCILE_ERROR, f"{message}; retrying every tick", now)
        )
        draft.conditions = conditions.blocked(status.conditions, Reason.RECONCILE_ERROR, message, generation, now)
    return drafting.Decision(draft, tuple(events))


# ---------------------------------------------------------------- taking over


def _initialize(tick: drafting.Tick, target: observations.Target) -> None:
    """Take over the target: record what it runs first (the primary's template from then on), then wait for
    the primary to be ready before the target is scaled to 0.

    The template is recorded at first sight, so a revision that appears during the takeover is not slipped
    onto the primary: it is released as a canary once the takeover is done.
    """
    status = tick.status
    name = tick.target_name
    if status.phase is None:
        status.phase = Phase.INITIALIZING
        status.target_replicas = target.replicas if status.target_replicas is None else status.target_replicas
        status.stable_revision = target.revision
        status.stable_template = dict(target.template)
        status.message = f"taking over {name}: {name}-primary starting at revision {target.revision}"
        tick.progressed()
        return
    if status.stable_template is None:  # written by an older operator: the target still runs what it took over
        status.stable_revision, status.stable_template = target.revision, dict(target.template)
    primary = tick.obs.primary
    if primary is not None and primary.revision == status.stable_revision and primary.rolled_out:
        status.phase = Phase.STABLE
        status.message = f"{name}-primary serves revision {status.stable_revision}"
        tick.progressed()
        tick.event(
            Normal,
            Reason.INITIALIZED,
            f"{name}-primary ready with {status.target_replicas} replicas at revision {status.stable_revision};"
            f" {name} scaled to 0; traffic 100% primary",
        )
        return
    waiting = f"waiting for {name}-primary to be ready"
    if _deadline_passed(tick):
        message = f"{waiting}: not ready within progressDeadline {tick.spec.progress_deadline}"
        tick.stalled = (Reason.PROGRESS_DEADLINE_EXCEEDED, message)
        if status.message != message:
            tick.event(Warning, Reason.PROGRESS_DEADLINE_EXCEEDED, f"{message}; {name} keeps serving")
        status.message = message
    else:
        status.message = waiting


def _follow_target_replicas(tick: drafting.Tick, target: observations.Target) -> None:
    """The user (or GitOps) scaled the target: that is the new size of the primary; the target goes back to 0."""
    if target.replicas > 0 and tick.status.target_replicas != target.replicas:
        tick.status.target_replicas = target.replicas
        name = tick.target_name
        tick.event(
            Normal,
            Reason.RESCALED,
            f"{name} asked for {target.replicas} replicas: primary scaled to {target.replicas}, {name} back to 0",
        )


# ---------------------------------------------------------------- requests


def _act_on_request(tick: drafting.Tick, target: observations.Target, request: observations.Request) -> bool:
    """Requests that act whatever step the rollout is at; True when handled (acted on)."""
    status = tick.status
    phase = status.phase
    kind = request.kind
    if kind is models.Request.ABORT and phase in models.EXPOSED_PHASES:
        requests.acknowledge(tick, request, f"rolled back revision {status.canary_revision}")
        _rollback(tick, "aborted by request (canary.dev/abort)", models.Outcome.ABORTED)
        return True
    pausable = phase is Phase.PROGRESSING or (phase is Phase.PAUSED and status.hold is not models.Hold.REQUEST)
    if kind is models.Request.PAUSE and pausable:
        requests.acknowledge(tick, request, f"paused at weight {tick.obs.traffic.weight}%")
        status.phase = Phase.PAUSED
        status.hold = models.Hold.REQUEST
        status.message = f"paused by request at weight {tick.obs.traffic.weight}%; annotate canary.dev/resume"
        tick.event(
            Normal,
            Reason.PAUSED_BY_REQUEST,
            f"paused by request at step {plan.current_index(tick.spec, status) + 1}/{len(tick.spec.steps)},"
            f" weight {tick.obs.traffic.weight}%; checks go on and a failing canary is still rolled back",
        )
        return True
    if kind is models.Request.RESUME and phase is Phase.PAUSED and status.hold is not models.Hold.INCONCLUSIVE:
        requests.acknowledge(tick, request, "resumed")
        status.phase = Phase.PROGRESSING
        status.hold = None
        status.message = f"analysing revision {status.canary_revision}"
        tick.progressed()
        tick.event(Normal, Reason.RESUMED, "resumed by request")
        return True
    if kind is models.Request.RETRY and phase is Phase.ROLLED_BACK and target.revision == status.rejected_revision:
        requests.acknowledge(tick, request, f"revision {target.revision} released again")
        status.rejected_revision = None
        tick.event(Normal, Reason.RETRIED, f"revision {target.revision} released again by request")
        return True
    if kind is models.Request.PROMOTE and request.value == "full" and phase in models.ANALYSING_PHASES:
        requests.acknowledge(tick, request, "remaining steps skipped after the next passed check")
        status.promote_full = True
        return True
    return False


def _nothing_waiting(tick: drafting.Tick) -> str:
    status = tick.status
    phase = status.phase.value if status.phase else "Initializing"
    if status.phase is Phase.PROGRESSING:
        step = plan.current_index(tick.spec, status) + 1
        return f"no gate waiting (phase {phase}, step {step}/{len(tick.spec.steps)})"
    return f"nothing waits for it in phase {phase}"


# ---------------------------------------------------------------- idle: a new revision?


def _note_restored(tick: drafting.Tick) -> None:
    """A rollback is over for users once the router reports no traffic on the canary: time to restore."""
    releases = tick.status.releases
    if tick.status.phase is not Phase.ROLLED_BACK or tick.obs.traffic.weight != 0 or not releases:
        return
    last = releases[-1]
    if last.outcome not in (models.Outcome.ROLLED_BACK, models.Outcome.ABORTED) or last.restored_at is not None:
        return
    since = plan.time(last.first_failure_at) or plan.time(last.finished_at) or tick.now
    restored = last.model_copy(
        update={"restored_at": tick.now_text, "time_to_restore_seconds": round((tick.now - since).total_seconds(), 3)}
    )
    tick.status.releases = [*releases[:-1], restored]
    tick.restored = restored


def _idle(
    tick: drafting.Tick, target: observations.Target, request: observations.Request | None
) -> observations.Request | None:
    status = tick.status
    _note_restored(tick)
    if target.revision == status.stable_revision:
        if status.stable_template is None:  # written by an older operator
            status.stable_template = dict(target.template)
        return request
    if target.revision == status.rejected_revision:
        # Why it was rolled back stays in the message (what an SRE reads first), not only in the release record.
        last = next((r for r in reversed(status.releases) if r.revision == target.revision), None)
        why = f"rolled back: {last.reason}" if last is not None and last.reason else "was rolled back"
        status.message = f"revision {target.revision} {why}; waiting for a new revision (or canary.dev/retry)"
        return request
    if not budget.wanted(tick.spec, tick.old, target.revision) and budget.wanted(tick.spec, status, target.revision):
        # Released again by this tick's retry: the budget (and the gates) were not read for it; next tick.
        status.message = f"revision {target.revision} released again; it starts once the error budget is read"
        return request
    forced = request is not None and request.kind is models.Request.FORCE_RELEASE
    force: observations.Request | None = None
    low = ""
    if tick.spec.slo is not None:
        obs = tick.obs
        decision = budget.decide(obs.budget_remaining, obs.budget_problem, forced, tick.now)
        if decision.action is models.BudgetAction.BLOCKED:
            exhausted = decision.band is models.BudgetBand.EXHAUSTED
            reason = Reason.ERROR_BUDGET_EXHAUSTED if exhausted else Reason.ERROR_BUDGET_UNKNOWN
            message = f"revision {target.revision} not started: {decision.message}"
            tick.stalled = (reason, message)
            if status.message != message:
                tick.event(Warning, reason, message)
            status.message = message
            status.budget = budget.unchanged(status.budget, decision)
            return request
        status.budget = decision
        if decision.action is models.BudgetAction.FORCED and request is not None:
            # Used up by the canary it starts, below: a shut pre-rollout gate may hold the start, and the
            # annotation then waits with it (acknowledged now, the budget would block the revision again).
            force, request = request, None
        if decision.action is not models.BudgetAction.PROCEED:
            tightened = (
                f"; limits x{tick.spec.slo.tighten_factor:g}" if decision.action is models.BudgetAction.TIGHTEN else ""
            )
            low = f"{decision.band}: {decision.message}{tightened}"  # told when the canary starts, once
    gate = _gate(tick, models.WebhookType.PRE_ROLLOUT, target.revision)
    if gate.gate is gating.Gate.WAITING:
        status.message = f"revision {target.revision} not started: {gate.message}"
        if deadlines.passed(deadlines.pre_rollout_at(tick.spec, status, target.revision), tick.now):
            # The stable revision keeps serving, so nothing is rolled back; but a gate that stays shut past
            # the deadline is a blocked release, and says so (Stalled), while it is still asked every interval.
            message = f"{status.message}; not open within progressDeadline {tick.spec.progress_deadline}"
            if tick.old.message != message:
                tick.event(Warning, Reason.WEBHOOK_REFUSED, message)
            status.message = message
            tick.stalled = (Reason.WEBHOOK_REFUSED, message)
        return request
    if gate.gate is gating.Gate.FAILED:
        status.rejected_revision = target.revision
        status.message = f"revision {target.revision} not started: {gate.message}"
        tick.stalled = (Reason.WEBHOOK_REFUSED, status.message)
        tick.event(Warning, Reason.WEBHOOK_REFUSED, f"{status.message}; it is not retried until the template changes")
        return request
    if force is not None:
        requests.acknowledge(tick, force, f"revision {target.revision} started despite the error budget")
    if low:
        tick.event(Warning, Reason.ERROR_BUDGET_LOW, low)
    _start(tick, target)
    return request


def _gate(tick: drafting.Tick, kind: models.WebhookType, revision: str | None) -> gating.GateState:
    return gating.state(tick.spec.webhooks, kind, tick.status.gates, revision)


def _confirmed(tick: drafting.Tick) -> bool:
    """The confirm-promotion gate before the primary is touched: True when open; a refusal with onFailure
    fail rolls back; otherwise the canary stays at its last step and weight, asking again every interval."""
    status = tick.status
    gate = _gate(tick, models.WebhookType.CONFIRM_PROMOTION, status.canary_revision)
    if gate.gate is gating.Gate.OPEN:
        return True
    if gate.gate is gating.Gate.FAILED:
        _rollback(tick, gate.message, models.Outcome.ROLLED_BACK, reason=Reason.WEBHOOK_REFUSED)
        return False
    status.message = f"step {plan.current_index(tick.spec, status) + 1}/{len(tick.spec.steps)} passed; {gate.message}"
    if _deadline_passed(tick):
        _deadline(tick, "no confirm-promotion")
    return False


def _start(tick: drafting.Tick, target: observations.Target) -> None:
    status = tick.status
    previous = status.canary_revision if status.phase in models.ANALYSING_PHASES else None
    # A person paused the release (an incident, a freeze): a new revision from Git starts at step 1 and stays
    # paused there, checks going on, until resumed. Only canary.dev/resume undoes canary.dev/pause.
    paused = status.phase is Phase.PAUSED and status.hold is models.Hold.REQUEST
    if previous:
        tick.event(
            Normal,
            Reason.CANARY_SUPERSEDED,
            f"revision {target.revision} replaced {previous} mid-analysis; analysis restarts at step 1",
        )
        tick.finish_release(models.Outcome.SUPERSEDED, f"replaced by revision {target.revision}")
    stamp = tick.now.strftime("%Y%m%dT%H%M%SZ")
    status.phase = Phase.PROGRESSING
    status.hold = None
    status.promote_full = False
    status.canary_revision = target.revision
    status.release_id = f"{tick.target_name}-{target.revision}-{stamp}"
    status.current_step_index = 0
    status.steps_digest = plan.digest(tick.spec.steps)
    status.step_started_at = tick.now_text
    status.weight_settled_at = None
    status.canary_started_at = tick.now_text
    status.failed_checks = {}
    status.failing_since = None
    status.inconclusive_checks = 0
    status.last_check_at = None
    status.last_verdict = None
    status.last_check = None
    status.evidence = None
    status.message = f"analysing revision {target.revision}"
    if paused:
        status.phase = Phase.PAUSED
        status.hold = models.Hold.REQUEST
        status.message = (
            f"analysing revision {target.revision}, paused by request at step 1; annotate canary.dev/resume"
        )
    tick.progressed()
    tick.event(
        Normal,
        Reason.CANARY_STARTED,
        f"revision {target.revision} (stable {status.stable_revision}); plan: {plan.summary(tick.spec.steps)}"
        + ("; still paused by request at step 1" if paused else ""),
    )


# ---------------------------------------------------------------- analysing


def _analyse(
    tick: drafting.Tick, target: observations.Target, request: observations.Request | None
) -> observations.Request | None:
    status = tick.status
    canary_revision = status.canary_revision
    if target.revision != canary_revision:
        if target.revision in (status.stable_revision, status.rejected_revision):
            back_to = Phase.ROLLED_BACK if target.revision == status.rejected_revision else Phase.STABLE
            status.phase = back_to
            status.hold = None
            status.message = f"canary {canary_revision} abandoned: target set back to revision {target.revision}"
            tick.event(Normal, Reason.CANARY_ABANDONED, status.message)
            tick.finish_release(models.Outcome.ABANDONED, status.message)
            return request
        _start(tick, target)
        return request

    _follow_plan_changes(tick)
    check = tick.obs.check
    if check is not None:
        tripped = checks.record(tick, check)
        if tripped:
            threshold = tick.spec.analysis.failure_threshold
            why = "; ".join(r.reason for r in tripped)
            _rollback(tick, why, models.Outcome.ROLLED_BACK, f"after {threshold} consecutive failed checks")
            return request
    failing = checks.failing_evidence(tick, check)
    if failing is not None:
        how = "as the always-valid test of the counts since the canary started shows"
        status.failing_since = status.failing_since or tick.now_text
        _rollback(tick, failing, models.Outcome.ROLLED_BACK, how)
        return request
    if status.phase is Phase.PAUSED:
        if status.hold is models.Hold.INCONCLUSIVE and _deadline_passed(tick):
            _deadline(tick, f"no conclusive check ({status.last_check.reason if status.last_check else 'no data'})")
        return request
    return _progress(tick, target, request)


def _follow_plan_changes(tick: drafting.Tick) -> None:
    """The steps changed under a running canary (a Git edit): start the new plan at its first step."""
    status = tick.status
    digest = plan.digest(tick.spec.steps)
    if status.steps_digest == digest:
        return
    if status.steps_digest is not None:
        status.current_step_index = 0
        status.step_started_at = tick.now_text
        status.weight_settled_at = None
        tick.progressed()
        # A promote=full asked of the old plan does not skip the new one's steps: that is asked again, if wanted.
        dropped = "; the canary.dev/promote=full request is dropped" if status.promote_full else ""
        status.promote_full = False
        tick.event(
            Normal,
            Reason.STEPS_CHANGED,
            f"the steps changed mid-canary; the new plan starts at step 1/{len(tick.spec.steps)}:"
            f" {plan.summary(tick.spec.steps)}{dropped}",
        )
    status.steps_digest = digest


def _progress(
    tick: drafting.Tick, target: observations.Target, request: observations.Request | None
) -> observations.Request | None:
    spec, status, obs = tick.spec, tick.status, tick.obs
    steps = spec.steps
    index = plan.current_index(spec, status)
    weight = plan.step_weight(steps, index)
    if not obs.traffic.settled or obs.canary is None or obs.canary.revision != target.revision:
        status.weight_settled_at = None
        if _deadline_passed(tick):
            _deadline(tick, f"canary not serving {weight}% with ready pods")
        return request
    if status.weight_settled_at is None:
        status.weight_settled_at = tick.now_text
        tick.progressed()
        return request
    settled = datetime.datetime.fromisoformat(status.weight_settled_at)
    interval = datetime.timedelta(seconds=spec.analysis.interval_seconds)
    last_at = plan.time(status.last_check_at)
    last = status.last_check
    # The check must have measured only traffic at this step's weight: its window starts after settling.
    # Pass rule no-harm: a check that shows no harm with enough requests at this step will do.
    passed_here = (
        last is not None
        and (last.verdict is Verdict.PASS or (bool(last.cleared) and last.verdict is not Verdict.FAIL))
        and last_at is not None
        and last_at - interval >= settled
    )
    step = steps[index]
    promoted_by = ""
    if status.promote_full and passed_here:
        if _confirmed(tick):
            _begin_promotion(tick, target, f"remaining steps skipped by request: {last.reason if last else ''}")
        return request
    if step.pause is not None and step.pause.seconds is None:
        if request is None or request.kind is not models.Request.PROMOTE:
            # A manual gate waits for a person: the deadline bounds waits on the cluster and the data only.
            status.message = f"paused at step {index + 1}/{len(steps)}: waiting for annotation canary.dev/promote"
            return request
        requests.acknowledge(tick, request, f"step {index + 1}/{len(steps)} passed")
        if request.value == "full":
            status.promote_full = True  # the confirm-promotion gate, if any, still has its say
            if _confirmed(tick):
                _begin_promotion(tick, target, "promoted at a manual gate with canary.dev/promote=full")
            return None
        request = None
        promoted_by = "promoted by annotation"
    elif step.pause is not None and step.pause.seconds is not None:
        ends = plan.pause_ends_at(spec, status)  # None: no start recorded, so the pause is not over
        if ends is None or tick.now < ends or not passed_here:
            return _waiting(tick, request)
    elif not passed_here:
        return _waiting(tick, request)

    if index + 1 >= len(steps) and not _confirmed(tick):
        if promoted_by:
            status.promote_full = True  # the person's promote stands while the gate decides
        return request
    evidence = promoted_by or _advanced_on(last)
    tick.event(Normal, Reason.STEP_ADVANCED, f"step {index + 1}/{len(steps)} done at weight {weight}%: {evidence}")
    index += 1
    status.current_step_index = index
    status.step_started_at = tick.now_text
    tick.progressed()
    # A new weight, or a new header/cookie route, must settle again before a check counts for the step.
    if index < len(steps) and (
        plan.step_weight(steps, index) != weight
        or models.step_route(steps, index) != models.step_route(steps, index - 1)
    ):
        status.weight_settled_at = None
    if index >= len(steps):
        _begin_promotion(tick, target, f"all {len(steps)} steps passed")
    else:
        status.message = f"step {index + 1}/{len(steps)}: analysing revision {status.canary_revision}"
    return request


def _advanced_on(last: models.CheckRecord | None) -> str:
    """What a step advanced on. An inconclusive check cleared by the pass rule says so: its own reason
    ("cannot tell yet") would read as if the step advanced on nothing."""
    if last is None:
        return ""
    if last.verdict is Verdict.PASS:
        return last.reason
    # Every metric, as a passing check's reason has them: an inconclusive check's own reason names the first only.
    reasons = "; ".join(m.reason for m in last.metrics) or last.reason
    return f"no harm shown (passRule no-harm), not proven within the limits yet: {reasons}"


def _waiting(tick: drafting.Tick, request: observations.Request | None) -> observations.Request | None:
    """Waiting for a passing check at this step; bounded by the progress deadline."""
    if _deadline_passed(tick):
        last = tick.status.last_check
        _deadline(tick, f"no passing check ({last.reason if last else 'no check taken'})")
    return request


# ---------------------------------------------------------------- deadlines


def _deadline_passed(tick: drafting.Tick) -> bool:
    return deadlines.passed(deadlines.progress_at(tick.spec, tick.status), tick.now)


def _deadline(tick: drafting.Tick, what: str, reason: Reason = Reason.PROGRESS_DEADLINE_EXCEEDED) -> None:
    """Nothing progressed for progressDeadline: roll back (the default) or hold, saying what did not happen."""
    status = tick.status
    why = (
        what
        if reason is Reason.BLOCKED_DEADLINE_EXCEEDED
        else f"{what} within progressDeadline {tick.spec.progress_deadline}"
    )
    if tick.spec.progress_deadline_abort:
        _rollback(tick, why, models.Outcome.ROLLED_BACK, reason=reason)
        return
    if status.phase is Phase.PAUSED and status.hold is models.Hold.DEADLINE:
        return
    status.phase = Phase.PAUSED
    status.hold = models.Hold.DEADLINE
    status.message = f"held: {why}; annotate canary.dev/resume or canary.dev/abort"
    tick.event(Warning, reason, f"{why}; holding (progressDeadlineAbort: false)")


# ---------------------------------------------------------------- verdicts


def _rollback(
    tick: drafting.Tick,
    why: str,
    outcome: models.Outcome,
    how: str = "",
    reason: Reason = Reason.ROLLED_BACK,
) -> None:
    status = tick.status
    revision = status.canary_revision
    aborted = outcome is models.Outcome.ABORTED
    status.phase = Phase.ROLLED_BACK
    status.hold = None
    status.promote_full = False
    status.promoting_template = None
    status.rejected_revision = revision
    status.message = f"revision {revision} rolled back: {why}"
    tick.event(  # "revision <canary> rolled back" is how notifications.event_of tells a rollback from a hold
        Warning,
        Reason.ABORTED if aborted else reason,
        f"revision {revision} rolled back{' ' + how if how else ''}: {why}; traffic 100% primary"
        f" (revision {status.stable_revision}), canary scaled to 0",
    )
    started = plan.time(status.canary_started_at) or tick.now
    tick.finish_release(
        outcome,
        why,
        time_to_detect_seconds=round((tick.now - started).total_seconds(), 3),
        first_failure_at=status.failing_since,
    )


def _begin_promotion(tick: drafting.Tick, target: observations.Target, why: str) -> None:
    status = tick.status
    last = status.last_check
    if last is not None and last.detectable:
        why = f"{why} (promoted {last.detectable})"
    status.phase = Phase.PROMOTING
    status.promote_full = False
    status.promoting_template = dict(target.template)
    status.message = f"promoting revision {target.revision}"
    tick.progressed()
    tick.event(
        Normal,
        Reason.PROMOTING,
        f"{why}; {tick.target_name}-primary rolling out revision {target.revision}",
    )


def _promote(tick: drafting.Tick, target: observations.Target) -> None:
    status = tick.status
    revision = status.canary_revision
    if status.promoting_template is None and target.revision == revision:  # written by an older operator
        status.promoting_template = dict(target.template)
    primary = tick.obs.primary
    if primary is None or primary.revision != revision or not primary.rolled_out:
        if _deadline_passed(tick):
            what = f"{tick.target_name}-primary did not roll out revision {revision}"
            if tick.spec.progress_deadline_abort:
                _rollback(
                    tick,
                    f"{what} within progressDeadline {tick.spec.progress_deadline}",
                    models.Outcome.ROLLED_BACK,
                    reason=Reason.PROGRESS_DEADLINE_EXCEEDED,
                )
            else:
                message = f"{what} within progressDeadline {tick.spec.progress_deadline}; still waiting"
                tick.stalled = (Reason.PROGRESS_DEADLINE_EXCEEDED, message)
                if status.message != message:
                    tick.event(Warning, Reason.PROGRESS_DEADLINE_EXCEEDED, message)
                status.message = message
        return
    status.phase = Phase.SUCCEEDED
    status.stable_revision = revision
    status.stable_template = status.promoting_template or status.stable_template
    status.promoting_template = None
    status.message = f"revision {revision} promoted"
    last = status.last_check
    detectable = last.detectable if last is not None and last.detectable else None
    tick.finish_release(
        models.Outcome.PROMOTED,
        f"all {len(tick.spec.steps)} steps passed" + (f"; promoted {detectable}" if detectable else ""),
        detectable=detectable,
    )
    tick.event(
        Normal,
        Reason.PROMOTED,
        f"revision {revision} promoted: {tick.target_name}-primary ready with {primary.ready_replicas} replicas;"
        f" traffic 100% primary, canary scaled to 0",
    )
