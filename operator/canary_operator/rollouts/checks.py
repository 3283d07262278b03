"""Analysis checks as the state machine sees them: when one is due, and how each one is folded into the status.

A failed check adds to its metric's streak and a passed one clears it; ``failureThreshold`` failures in a
row roll back. Inconclusive checks neither pass nor fail: they extend the step (``maxStepExtension``) and
then hold the rollout (phase Paused), and the progress deadline bounds how long.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from canary_operator import models
from canary_operator.rollouts import drafting, plan

Phase = models.Phase
Verdict = models.Verdict
RECENT_CHECKS = 5


def due(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus, now: datetime.datetime) -> bool:
    """Whether the handler should take measurements this tick.

    Checks start once the canary has reached its weight (a canary still starting up would only produce
    inconclusive checks) and run every ``analysis.interval`` from then on, so that the first check after a
    weight change measures only traffic at the new weight. A paused rollout keeps checking, so that it can
    resume, and so that a canary failing while held is still rolled back.
    """
    at = next_check_at(spec, status, now)
    return at is not None and now >= at


def next_check_at(
    spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus, now: datetime.datetime
) -> datetime.datetime | None:
    """When the next check is due (``now`` when at once); None when no check is taken in this phase."""
    if status.phase is Phase.PAUSED:
        last = plan.time(status.last_check_at) or plan.time(status.canary_started_at)
    elif status.phase is Phase.PROGRESSING and status.weight_settled_at is not None:
        settled = plan.time(status.weight_settled_at)
        last_check = plan.time(status.last_check_at)
        last = max(settled, last_check) if settled and last_check else settled
    else:
        return None
    return now if last is None else last + datetime.timedelta(seconds=spec.analysis.interval_seconds)


def continuous_due(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus, now: datetime.datetime) -> bool:
    """Whether the handler should run the continuous (always-valid) test of the counts since the canary started.

    Every ``continuousInterval`` while analysing, from the canary's start, on ticks without a check (a
    check carries the same evidence).
    """
    at = next_reading_at(spec, status)
    return at is not None and now >= at and not due(spec, status, now)


def next_reading_at(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus) -> datetime.datetime | None:
    """When the continuous test is next due, ``continuousInterval`` after its last reading (None: off)."""
    since = last_reading(spec, status)
    if since is None:
        return None
    return since + datetime.timedelta(seconds=models.parse_duration(spec.analysis.continuous_interval))


def last_reading(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus) -> datetime.datetime | None:
    """What the continuous test counts its interval from: its last reading, or the canary's start (None: off).

    A check is not counted as a reading, though it carries the same evidence: the two cadences add up, and
    fewer looks at the evidence would mean a later rollback on average.
    """
    if not spec.analysis.continuous or status.phase not in models.ANALYSING_PHASES:
        return None
    started = plan.time(status.canary_started_at)
    if started is None:
        return None
    last = plan.time(status.evidence.at) if status.evidence is not None else None
    return max(started, last) if last is not None else started


def failing_evidence(tick: drafting.Tick, check: models.CheckRecord | None) -> str | None:
    """The continuous analysis: why the evidence since the start fails the canary, if it does (a rollback at once).

    Its always-valid p-value keeps the false-rollback chance over the whole canary within the budget however
    often it is read, so it needs no streak of failures (``failureThreshold`` governs the per-window checks).
    """
    evidence = tick.obs.evidence
    if evidence is not None:
        tick.status.evidence = evidence
    if not tick.spec.analysis.continuous:
        return None
    if evidence is not None and evidence.verdict is Verdict.FAIL:
        # The rollout's last verdict is this one, not the last interval check's (often inconclusive at low traffic):
        # `kubectl get` beside RolledBack must not read "Inconclusive".
        names = ",".join(e.metric for e in evidence.metrics if e.verdict is Verdict.FAIL)
        tick.status.last_verdict = f"Fail ({names}, since the start)" if names else "Fail (since the start)"
        return evidence.reason
    failing = [r for r in (check.metrics if check else []) if r.evidence and r.evidence.verdict is Verdict.FAIL]
    return "; ".join(r.reason for r in failing) or None


def short_verdict(record: models.CheckRecord) -> str:
    if record.verdict is Verdict.PASS:
        return "Pass"
    if record.verdict is Verdict.FAIL:
        names = ",".join(m.name for m in record.metrics if m.verdict is Verdict.FAIL)
        return f"Fail ({names})"
    return f"Inconclusive ({record.cause})"


def fold_failures(analysis: models.Analysis, failed: Mapping[str, int], check: models.CheckRecord) -> dict[str, int]:
    """Each metric's streak of failed checks after one more check; rollback at ``failureThreshold``.

    A failure adds one and a pass clears the streak; an inconclusive result does neither. A comparison that
    fails with a p-value at or below ``(1 - confidence) ** failureThreshold`` counts as the whole streak at
    once: one window that decisive is as unlikely on a good canary as that many failed checks in a row, and
    waiting for them would only expose users longer. ``failFast: false`` turns that off, for teams that
    would rather ride out a one-minute burst. Metrics removed from the spec lose their streaks.
    """
    confidence = {m.name: m.confidence for m in analysis.metrics}
    judged = set(confidence) | {r.name for r in check.metrics}  # the spec's metrics and the judge's own (burn rate)
    streaks = {name: count for name, count in failed.items() if name in judged}
    threshold = analysis.failure_threshold
    for result in check.metrics:
        if result.verdict is Verdict.FAIL:
            streaks[result.name] = streaks.get(result.name, 0) + 1
            decisive = (1 - confidence.get(result.name, 0.99)) ** threshold
            if analysis.fail_fast and result.p_value is not None and result.p_value <= decisive:
                streaks[result.name] = max(streaks[result.name], threshold)
        elif result.verdict is Verdict.PASS:
            streaks[result.name] = 0
    return streaks


def record(tick: drafting.Tick, check: models.CheckRecord) -> list[models.MetricResult]:
    """Fold one check into the draft; the metrics whose streak reached the threshold (rollback) are returned."""
    analysis = tick.spec.analysis
    status = tick.status
    failed = fold_failures(analysis, status.failed_checks, check)
    check = check.model_copy(update={"release": status.release_id})
    first_failure = check.verdict is Verdict.FAIL and not any(n > 0 for n in status.failed_checks.values())
    if any(count > 0 for count in failed.values()):
        status.failing_since = status.failing_since or check.at
    else:
        status.failing_since = None
    status.last_check = check
    status.last_check_at = check.at
    status.last_verdict = short_verdict(check)
    status.failed_checks = failed
    # The recent checks show the trend; without their PromQL (the last check keeps it) the status stays small.
    brief = check.model_copy(update={"metrics": [m.model_copy(update={"query": None}) for m in check.metrics]})
    status.recent_checks = [*status.recent_checks, brief][-RECENT_CHECKS:]

    tripped = [r for r in check.metrics if failed.get(r.name, 0) >= analysis.failure_threshold]
    if tripped:
        return tripped
    if first_failure:
        # One Event when a streak starts; the checks that follow are in the status and the log.
        tick.event(
            models.EventType.WARNING,
            models.Reason.CHECK_FAILED,
            f"{check.reason} [weight {check.weight}%; {analysis.failure_threshold} in a row roll back]",
        )

    if check.verdict is Verdict.INCONCLUSIVE and not check.cleared:
        status.inconclusive_checks += 1
        hold, progress = _hold_for_inconclusive(tick, check, status.inconclusive_checks)
        if hold and status.phase is Phase.PROGRESSING:
            status.phase = Phase.PAUSED
            status.hold = models.Hold.INCONCLUSIVE
            status.message = f"held: {check.reason}"
            tick.event(
                models.EventType.WARNING,
                models.Reason.PAUSED,
                f"{progress} ({check.cause}): {check.reason}; holding at weight {tick.obs.traffic.weight}%,"
                f" resumes when checks are conclusive, rolls back if none is within {tick.spec.progress_deadline}",
            )
        elif not hold and status.phase is Phase.PROGRESSING:
            status.message = f"step {plan.current_index(tick.spec, status) + 1} extended: {check.reason}"
        return []
    status.inconclusive_checks = 0
    if check.verdict is Verdict.PASS or check.cleared:  # pass rule no-harm: no evidence of harm will do
        tick.progressed()
    if status.phase is Phase.PAUSED and status.hold is models.Hold.INCONCLUSIVE:
        status.phase = Phase.PROGRESSING
        status.hold = None
        status.message = f"analysing revision {status.canary_revision}"
        tick.event(models.EventType.NORMAL, models.Reason.RESUMED, f"checks conclusive again: {check.reason}")
    return []


def _hold_for_inconclusive(tick: drafting.Tick, check: models.CheckRecord, count: int) -> tuple[bool, str]:
    """Whether inconclusive checks have gone on long enough to hold the rollout, and how far along that is.

    Too little traffic extends the step by up to ``maxStepExtension`` past its plan, when set; anything
    else (and too little traffic without it) holds after ``inconclusiveThreshold`` checks in a row.
    """
    analysis = tick.spec.analysis
    status = tick.status
    if check.cause == models.Reason.INSUFFICIENT_TRAFFIC and analysis.max_step_extension is not None:
        step = tick.spec.steps[plan.current_index(tick.spec, status)]
        planned = (step.pause.seconds or 0.0) if step.pause is not None else analysis.interval_seconds
        started = plan.time(status.weight_settled_at) or plan.time(status.step_started_at) or tick.now
        extension = models.parse_duration(analysis.max_step_extension)
        over = (tick.now - started).total_seconds() - planned
        return over >= extension, f"step extended {max(over, 0):.0f}s of {analysis.max_step_extension}"
    return count >= analysis.inconclusive_threshold, f"{count}/{analysis.inconclusive_threshold} inconclusive in a row"
