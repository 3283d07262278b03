"""The rollout state machine: ``(spec, status, observations, now) -> (actions, events, status)``.

Pure: no Kubernetes, no Prometheus, no clock of its own. Everything it knows
comes from the spec, the last written status and what the handler observed
this tick; everything it wants done comes back as actions for the handler to
apply, and as a new status for the handler to write in one patch.

All actions are idempotent and derived from spec + status ("make the primary
run this template"), so a tick that is interrupted half-way, or an operator
restarted at any moment, repeats the same desired state instead of repeating a
promotion or a rollback. The handler applies actions *before* writing the
status: a status that says "Promoting" implies the primary was already told.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from canary_operator import models

Phase = models.Phase
Verdict = models.Verdict
RECENT_CHECKS = 5
RECENT_RELEASES = 10


# ---------------------------------------------------------------- observations


@dataclasses.dataclass(frozen=True)
class Workload:
    """What the cluster says about a Deployment the operator owns."""

    revision: str | None
    replicas: int
    ready_replicas: int = 0
    updated_replicas: int = 0
    generation: int = 1
    observed_generation: int = 0

    @property
    def rolled_out(self) -> bool:
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas >= self.replicas
            and self.ready_replicas >= self.replicas
        )


@dataclasses.dataclass(frozen=True)
class Target:
    """The user's Deployment: its pod template, the template's hash, its replicas."""

    revision: str
    template: Mapping[str, Any]
    replicas: int


@dataclasses.dataclass(frozen=True)
class Observations:
    generation: int
    target: Target | None
    primary: Workload | None = None
    canary: Workload | None = None
    weight: int = 0  # the weight the router actually achieved
    traffic_settled: bool = False  # the router reached what it was last asked for
    check: models.CheckRecord | None = None  # present when a check was due and taken
    promote_requested: bool = False
    # With an SLO, before a canary starts: the share of the error budget left (None: unknown, see budget_problem).
    budget_remaining: float | None = None
    budget_problem: str = ""
    force_release: bool = False  # the canary.dev/force-release annotation: start despite an exhausted budget


# ---------------------------------------------------------------- actions


@dataclasses.dataclass(frozen=True)
class EnsurePrimary:
    template: Mapping[str, Any]
    revision: str
    replicas: int


@dataclasses.dataclass(frozen=True)
class ScalePrimary:
    replicas: int


@dataclasses.dataclass(frozen=True)
class EnsureCanary:
    template: Mapping[str, Any]
    revision: str


@dataclasses.dataclass(frozen=True)
class EnsureServices:
    pass


@dataclasses.dataclass(frozen=True)
class SetWeight:
    weight: int
    primary_replicas: int


@dataclasses.dataclass(frozen=True)
class ScaleTarget:
    replicas: int


PROMOTE_ANNOTATION = "canary.dev/promote"  # promote past a pause without duration
FORCE_ANNOTATION = "canary.dev/force-release"  # start a canary although the error budget is exhausted


@dataclasses.dataclass(frozen=True)
class ForgetAnnotation:
    """Remove a one-shot annotation (promote, force-release) from the CanaryRollout once acted on."""

    key: str


Action = EnsurePrimary | ScalePrimary | EnsureCanary | EnsureServices | SetWeight | ScaleTarget | ForgetAnnotation


@dataclasses.dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    events: tuple[Event, ...]
    status: models.CanaryRolloutStatus
    finished: tuple[models.ReleaseRecord, ...] = ()  # releases that reached a verdict this tick
    restored: models.ReleaseRecord | None = None  # a rolled-back release whose traffic is back on the primary


# ---------------------------------------------------------------- derived values


def _time(text: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(text) if text else None


def step_weight(steps: list[models.Step], index: int) -> int:
    """The canary weight in force at step ``index``: the last setWeight at or before it."""
    for step in reversed(steps[: index + 1]):
        if step.set_weight is not None:
            return step.set_weight
    return 0


def primary_replicas(target_replicas: int | None) -> int:
    """The primary's size: what the target had when taken over (or was scaled to since); 1 before that."""
    return 1 if target_replicas is None else int(target_replicas)


def desired_weight(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus) -> int:
    if status.phase in models.ANALYSING_PHASES or status.phase is Phase.PROMOTING:
        return step_weight(spec.steps, min(status.current_step_index or 0, len(spec.steps) - 1))
    return 0


def check_due(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus, now: datetime.datetime) -> bool:
    """Whether the handler should take measurements this tick.

    Checks start once the canary has reached its weight (a canary still
    starting up would only produce inconclusive checks) and run every
    ``analysis.interval`` from then on, so that the first check after a weight
    change measures only traffic at the new weight. A paused rollout keeps
    checking so that it can resume.
    """
    if status.phase is Phase.PAUSED:
        last = _time(status.last_check_at) or _time(status.canary_started_at)
    elif status.phase is Phase.PROGRESSING and status.weight_settled_at is not None:
        settled = _time(status.weight_settled_at)
        last_check = _time(status.last_check_at)
        last = max(settled, last_check) if settled and last_check else settled
    else:
        return False
    return last is None or (now - last).total_seconds() >= spec.analysis.interval_seconds


def plan_summary(steps: list[models.Step]) -> str:
    parts = []
    for step in steps:
        if step.set_weight is not None:
            parts.append(f"{step.set_weight}%")
        elif step.pause is not None:
            parts.append(f"pause {step.pause.duration}" if step.pause.duration else "pause until promoted")
    return " -> ".join(parts)


def short_verdict(record: models.CheckRecord) -> str:
    if record.verdict is Verdict.PASS:
        return "Pass"
    if record.verdict is Verdict.FAIL:
        names = ",".join(m.name for m in record.metrics if m.verdict is Verdict.FAIL)
        return f"Fail ({names})"
    return f"Inconclusive ({record.cause})"


# ---------------------------------------------------------------- the tick


class _Tick:
    """The mutable scratchpad of one reconcile call; frozen into a Decision at the end."""

    def __init__(
        self,
        spec: models.CanaryRolloutSpec,
        status: models.CanaryRolloutStatus,
        obs: Observations,
        now: datetime.datetime,
    ) -> None:
        self.spec = spec
        self.old = status
        self.obs = obs
        self.now = now
        self.changes: dict[str, Any] = {}
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.stalled: tuple[str, str] | None = None  # (reason, message) when progress is blocked
        self.finished: list[models.ReleaseRecord] = []
        self.restored: models.ReleaseRecord | None = None

    def get(self, field: str) -> Any:
        return self.changes[field] if field in self.changes else getattr(self.old, field)

    def set(self, **changes: Any) -> None:
        self.changes.update(changes)

    def act(self, action: Action) -> None:
        self.actions.append(action)

    def event(self, type_: str, reason: str, message: str) -> None:
        """An Event; it names the release it is about, so one release's story can be filtered out."""
        release = self.get("release_id")
        self.events.append(Event(type_, reason, f"{message} [release {release}]" if release else message))

    def finish_release(self, outcome: str, reason: str, **extra: Any) -> models.ReleaseRecord | None:
        release_id, started = self.old.release_id, _time(self.old.canary_started_at)
        if release_id is None or started is None or self.old.canary_revision is None:
            return None
        record = models.ReleaseRecord(
            release_id=release_id,
            revision=self.old.canary_revision,
            outcome=outcome,
            started_at=started.isoformat(),
            finished_at=self.now_text,
            duration_seconds=round((self.now - started).total_seconds(), 3),
            reason=reason,
            **extra,
        )
        self.finished.append(record)
        self.set(releases=[*self.get("releases"), record][-RECENT_RELEASES:])
        return record

    @property
    def now_text(self) -> str:
        return self.now.isoformat()

    @property
    def primary_replicas(self) -> int:
        return primary_replicas(self.get("target_replicas"))


def reconcile(
    spec: models.CanaryRolloutSpec,
    status: models.CanaryRolloutStatus,
    obs: Observations,
    now: datetime.datetime,
) -> Decision:
    tick = _Tick(spec, status, obs, now)
    target = obs.target
    if target is None:
        name = spec.target_ref.name
        tick.stalled = ("TargetNotFound", f"Deployment {name} not found")
        if status.message != tick.stalled[1]:
            tick.event("Warning", "TargetNotFound", f"Deployment {name} not found; nothing to release")
        tick.set(message=tick.stalled[1])
    else:
        phase = status.phase
        if phase is None or phase is Phase.INITIALIZING:
            _initialize(tick, target)
        else:
            _follow_target_replicas(tick, target)
            if phase in models.IDLE_PHASES:
                _idle(tick, target)
            elif phase in models.ANALYSING_PHASES:
                _analyse(tick, target)
            elif phase is Phase.PROMOTING:
                _promote(tick, target)
        tick.set(weight=obs.weight)
    tick.set(observed_generation=obs.generation)
    tick.set(conditions=_conditions(tick))
    new_status = status.model_copy(update=tick.changes)
    return Decision(tuple(tick.actions), tuple(tick.events), new_status, tuple(tick.finished), tick.restored)


def blocked(
    status: models.CanaryRolloutStatus, generation: int, reason: str, message: str, now: datetime.datetime
) -> Decision:
    """Progress is impossible until the user acts (invalid spec, object conflict): say why, touch nothing."""
    events: tuple[Event, ...] = ()
    if status.observed_generation != generation or status.message != message:
        events = (Event("Warning", reason, message),)
    wanted = [("Ready", "False", reason, message), ("Stalled", "True", reason, message)]
    wanted.append(("Reconciling", "False", reason, message))
    conditions = _merge_conditions(status.conditions, wanted, generation, now)
    new = status.model_copy(update={"message": message, "observed_generation": generation, "conditions": conditions})
    return Decision((), events, new)


def _initialize(tick: _Tick, target: Target) -> None:
    """Take over the target: primary as a copy of it, canary idle, Services; then scale the target to 0."""
    replicas = tick.old.target_replicas if tick.old.target_replicas is not None else target.replicas
    tick.set(phase=Phase.INITIALIZING, target_replicas=replicas, stable_revision=target.revision)
    tick.act(EnsurePrimary(target.template, target.revision, replicas))
    tick.act(EnsureCanary(target.template, target.revision))
    tick.act(EnsureServices())
    tick.act(SetWeight(0, replicas))
    primary = tick.obs.primary
    if primary is not None and primary.revision == target.revision and primary.rolled_out:
        tick.act(ScaleTarget(0))
        name = tick.spec.target_ref.name
        tick.set(phase=Phase.STABLE, message=f"{name}-primary serves revision {target.revision}")
        tick.event(
            "Normal",
            "Initialized",
            f"{name}-primary ready with {replicas} replicas at revision {target.revision};"
            f" {name} scaled to 0; traffic 100% primary",
        )
    else:
        tick.set(message=f"waiting for {tick.spec.target_ref.name}-primary to be ready")


def _follow_target_replicas(tick: _Tick, target: Target) -> None:
    """The user (or GitOps) scaled the target: that is the new size of the primary."""
    if target.replicas > 0:
        tick.set(target_replicas=target.replicas)
        tick.act(ScalePrimary(target.replicas))
        tick.act(ScaleTarget(0))
        tick.event(
            "Normal",
            "Rescaled",
            f"{tick.spec.target_ref.name} asked for {target.replicas} replicas: primary scaled to"
            f" {target.replicas}, {tick.spec.target_ref.name} back to 0",
        )


def wants_budget(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus, revision: str | None) -> bool:
    """Whether this tick may start a canary that an error-budget decision must clear first."""
    return (
        spec.slo is not None
        and status.phase in models.IDLE_PHASES
        and revision is not None
        and revision not in (status.stable_revision, status.rejected_revision)
    )


# (lowest remaining share, band, action); the usual error-budget policy bands.
BUDGET_BANDS = (
    (0.50, "healthy", "proceed"),
    (0.25, "caution", "proceed-with-warning"),
    (0.10, "warning", "tighten"),
)


def budget_decision(
    remaining: float | None, problem: str, forced: bool, now: datetime.datetime
) -> models.BudgetDecision:
    at = now.isoformat()
    if remaining is None:
        return models.BudgetDecision(
            at=at,
            band="unknown",
            action="blocked",
            message=f"error budget unknown ({problem}); the canary waits for it",
        )
    left = f"{max(remaining, 0) * 100:.0f}% of the error budget left"
    for floor, band, action in BUDGET_BANDS:
        if remaining > floor:
            return models.BudgetDecision(at=at, remaining=remaining, band=band, action=action, message=left)
    action, outcome = (
        ("forced", "started anyway: canary.dev/force-release")
        if forced
        else ("blocked", "the canary does not start (annotate canary.dev/force-release to force)")
    )
    return models.BudgetDecision(
        at=at, remaining=remaining, band="exhausted", action=action, message=f"{left}; {outcome}"
    )


def tighten_factor(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus) -> float:
    """How much the current canary's limits are tightened by its error-budget decision."""
    if spec.slo is not None and status.budget is not None and status.budget.action == "tighten":
        return spec.slo.tighten_factor
    return 1.0


def _note_restored(tick: _Tick) -> None:
    """A rollback is over for users once the router reports no traffic on the canary: time to restore."""
    releases = tick.old.releases
    if tick.old.phase is not Phase.ROLLED_BACK or tick.obs.weight != 0 or not releases:
        return
    last = releases[-1]
    if last.outcome != "rolled_back" or last.restored_at is not None:
        return
    since = _time(last.first_failure_at) or _time(last.finished_at) or tick.now
    restored = last.model_copy(
        update={"restored_at": tick.now_text, "time_to_restore_seconds": round((tick.now - since).total_seconds(), 3)}
    )
    tick.set(releases=[*releases[:-1], restored])
    tick.restored = restored


def _idle(tick: _Tick, target: Target) -> None:
    _note_restored(tick)
    tick.act(SetWeight(0, tick.primary_replicas))
    if target.revision == tick.old.stable_revision:
        return
    if target.revision == tick.old.rejected_revision:
        tick.set(message=f"revision {target.revision} was rolled back; waiting for a new revision")
        return
    if tick.spec.slo is not None:
        obs = tick.obs
        decision = budget_decision(obs.budget_remaining, obs.budget_problem, obs.force_release, tick.now)
        if decision.action == "blocked":
            reason = "ErrorBudgetExhausted" if decision.band == "exhausted" else "ErrorBudgetUnknown"
            message = f"revision {target.revision} not started: {decision.message}"
            tick.stalled = (reason, message)
            if tick.old.message != message:
                tick.event("Warning", reason, message)
            tick.set(message=message, budget=decision)
            return
        tick.set(budget=decision)
        if decision.action == "forced":
            tick.act(ForgetAnnotation(FORCE_ANNOTATION))
        if decision.action != "proceed":
            tightened = f"; limits x{tick.spec.slo.tighten_factor:g}" if decision.action == "tighten" else ""
            tick.event("Warning", "ErrorBudgetLow", f"{decision.band}: {decision.message}{tightened}")
    _start(tick, target)


def _start(tick: _Tick, target: Target) -> None:
    previous = tick.old.canary_revision if tick.old.phase in models.ANALYSING_PHASES else None
    if previous:
        tick.event(
            "Normal",
            "CanarySuperseded",
            f"revision {target.revision} replaced {previous} mid-analysis; analysis restarts at step 1",
        )
        tick.finish_release("superseded", f"replaced by revision {target.revision}")
    stamp = tick.now.strftime("%Y%m%dT%H%M%SZ")
    tick.set(
        phase=Phase.PROGRESSING,
        canary_revision=target.revision,
        release_id=f"{tick.spec.target_ref.name}-{target.revision}-{stamp}",
        current_step_index=0,
        step_started_at=tick.now_text,
        weight_settled_at=None,
        canary_started_at=tick.now_text,
        failed_checks={},
        failing_since=None,
        inconclusive_checks=0,
        last_check_at=None,
        last_verdict=None,
        last_check=None,
        message=f"analysing revision {target.revision}",
    )
    tick.act(EnsureCanary(target.template, target.revision))
    tick.event(
        "Normal",
        "CanaryStarted",
        f"revision {target.revision} (stable {tick.old.stable_revision}); plan: {plan_summary(tick.spec.steps)}",
    )
    _progress(tick, target)


def _analyse(tick: _Tick, target: Target) -> None:
    canary_revision = tick.old.canary_revision
    if target.revision != canary_revision:
        if target.revision == tick.old.stable_revision or target.revision == tick.old.rejected_revision:
            back_to = "RolledBack" if target.revision == tick.old.rejected_revision else "Stable"
            tick.act(SetWeight(0, tick.primary_replicas))
            tick.set(
                phase=Phase(back_to),
                message=f"canary {canary_revision} abandoned: target set back to revision {target.revision}",
            )
            tick.event("Normal", "CanaryAbandoned", tick.get("message"))
            tick.finish_release("abandoned", tick.get("message"))
            return
        _start(tick, target)
        return

    tick.act(EnsureCanary(target.template, target.revision))
    check = tick.obs.check
    if check is not None:
        if _record_check(tick, check):
            return
    if tick.get("phase") is Phase.PAUSED:
        tick.act(SetWeight(desired_weight(tick.spec, tick.old), tick.primary_replicas))
        return
    _progress(tick, target)


def fold_failures(analysis: models.Analysis, failed: Mapping[str, int], check: models.CheckRecord) -> dict[str, int]:
    """Each metric's streak of failed checks after one more check; rollback at ``failureThreshold``.

    A failure adds one and a pass clears the streak; an inconclusive result does neither. A
    comparison that fails with a p-value at or below ``(1 - confidence) ** failureThreshold`` counts
    as the whole streak at once: one window that decisive is as unlikely on a good canary as that
    many failed checks in a row, and waiting for them would only expose users longer. ``failFast:
    false`` turns that off, for teams that would rather ride out a one-minute burst.
    """
    streaks = dict(failed)
    confidence = {m.name: m.confidence for m in analysis.metrics}
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


def _record_check(tick: _Tick, check: models.CheckRecord) -> bool:
    """Fold one check into the status; True when it rolled the canary back."""
    analysis = tick.spec.analysis
    failed = fold_failures(analysis, tick.old.failed_checks, check)
    check = check.model_copy(update={"release": tick.old.release_id})
    recent = [*tick.old.recent_checks, check][-RECENT_CHECKS:]
    failing_since = tick.old.failing_since
    if any(count > 0 for count in failed.values()):
        failing_since = failing_since or check.at
    else:
        failing_since = None
    tick.set(
        failing_since=failing_since,
        last_check=check,
        last_check_at=check.at,
        last_verdict=short_verdict(check),
        failed_checks=failed,
        recent_checks=recent,
    )

    tripped = [r for r in check.metrics if failed.get(r.name, 0) >= analysis.failure_threshold]
    if tripped:
        _rollback(tick, tripped)
        return True
    if check.verdict is Verdict.FAIL:
        tick.event("Warning", "CheckFailed", f"{check.reason} [weight {check.weight}%]")
    elif check.verdict is Verdict.PASS:
        tick.event("Normal", "CheckPassed", f"{check.reason} [weight {check.weight}%]")

    if check.verdict is Verdict.INCONCLUSIVE:
        count = tick.old.inconclusive_checks + 1
        tick.set(inconclusive_checks=count)
        hold, progress = _hold_for_inconclusive(tick, check, count)
        tick.event("Normal", "CheckInconclusive", f"{check.reason} [{progress}]")
        if hold and tick.old.phase is Phase.PROGRESSING:
            tick.set(phase=Phase.PAUSED, message=f"held: {check.reason}")
            tick.event(
                "Warning",
                "Paused",
                f"{progress} ({check.cause}): {check.reason}; holding at"
                f" weight {tick.obs.weight}%, resumes when checks are conclusive",
            )
        elif not hold:
            tick.set(message=f"step {(tick.get('current_step_index') or 0) + 1} extended: {check.reason}")
    else:
        tick.set(inconclusive_checks=0)
        if tick.old.phase is Phase.PAUSED:
            tick.set(phase=Phase.PROGRESSING, message=f"analysing revision {tick.old.canary_revision}")
            tick.event("Normal", "Resumed", f"checks conclusive again: {check.reason}")
    return False


def _hold_for_inconclusive(tick: _Tick, check: models.CheckRecord, count: int) -> tuple[bool, str]:
    """Whether inconclusive checks have gone on long enough to hold the rollout, and how far along that is.

    Too little traffic extends the step by up to ``maxStepExtension`` past its plan, when set;
    anything else (and too little traffic without it) holds after ``inconclusiveThreshold`` checks in a row.
    """
    analysis = tick.spec.analysis
    if check.cause == "InsufficientTraffic" and analysis.max_step_extension is not None:
        steps = tick.spec.steps
        step = steps[min(tick.get("current_step_index") or 0, len(steps) - 1)]
        planned = (step.pause.seconds or 0.0) if step.pause is not None else analysis.interval_seconds
        started = _time(tick.get("weight_settled_at")) or _time(tick.get("step_started_at")) or tick.now
        extension = models.parse_duration(analysis.max_step_extension)
        over = (tick.now - started).total_seconds() - planned
        return over >= extension, f"step extended {max(over, 0):.0f}s of {analysis.max_step_extension}"
    return count >= analysis.inconclusive_threshold, f"{count}/{analysis.inconclusive_threshold} inconclusive in a row"


def _rollback(tick: _Tick, tripped: list[models.MetricResult]) -> None:
    threshold = tick.spec.analysis.failure_threshold
    why = "; ".join(r.reason for r in tripped)
    revision = tick.old.canary_revision
    tick.act(SetWeight(0, tick.primary_replicas))
    tick.set(
        phase=Phase.ROLLED_BACK,
        rejected_revision=revision,
        message=f"revision {revision} rolled back: {why}",
    )
    tick.event(
        "Warning",
        "RolledBack",
        f"revision {revision} rolled back after {threshold} consecutive failed checks: {why};"
        f" traffic 100% primary, canary scaled to 0",
    )
    started = _time(tick.old.canary_started_at) or tick.now
    tick.finish_release(
        "rolled_back",
        why,
        time_to_detect_seconds=round((tick.now - started).total_seconds(), 3),
        first_failure_at=tick.get("failing_since"),
    )


def _progress(tick: _Tick, target: Target) -> None:
    steps = tick.spec.steps
    index = tick.get("current_step_index") or 0
    weight = step_weight(steps, index)
    tick.act(SetWeight(weight, tick.primary_replicas))
    if not tick.obs.traffic_settled or tick.obs.canary is None or tick.obs.canary.revision != target.revision:
        tick.set(weight_settled_at=None)
        return
    settled_text = tick.get("weight_settled_at")
    if settled_text is None:
        tick.set(weight_settled_at=tick.now_text)
        return
    settled = datetime.datetime.fromisoformat(settled_text)
    interval = datetime.timedelta(seconds=tick.spec.analysis.interval_seconds)
    last_at = _time(tick.get("last_check_at"))
    last: models.CheckRecord | None = tick.get("last_check")
    # The check must have measured only traffic at this step's weight: its window starts after settling.
    passed_here = (
        last is not None and last.verdict is Verdict.PASS and last_at is not None and last_at - interval >= settled
    )
    step = steps[index]
    if step.pause is not None:
        if step.pause.seconds is None:
            if not tick.obs.promote_requested:
                tick.set(message=f"paused at step {index + 1}: waiting for annotation canary.dev/promote")
                return
            tick.act(ForgetAnnotation(PROMOTE_ANNOTATION))
        else:
            started = _time(tick.get("step_started_at")) or tick.now
            if (tick.now - started).total_seconds() < step.pause.seconds or not passed_here:
                return
    elif not passed_here:
        return

    evidence = last.reason if last is not None and passed_here else "promoted by annotation"
    tick.event("Normal", "StepAdvanced", f"step {index + 1}/{len(steps)} done at weight {weight}%: {evidence}")
    index += 1
    tick.set(current_step_index=index, step_started_at=tick.now_text)
    if index < len(steps) and step_weight(steps, index) != weight:
        tick.set(weight_settled_at=None)
    if index >= len(steps):
        _begin_promotion(tick, target)


def _begin_promotion(tick: _Tick, target: Target) -> None:
    tick.set(phase=Phase.PROMOTING, message=f"promoting revision {target.revision}")
    tick.act(EnsurePrimary(target.template, target.revision, tick.primary_replicas))
    tick.event(
        "Normal",
        "Promoting",
        f"all {len(tick.spec.steps)} steps passed; {tick.spec.target_ref.name}-primary rolling out"
        f" revision {target.revision}",
    )


def _promote(tick: _Tick, target: Target) -> None:
    revision = tick.old.canary_revision
    assert revision is not None
    if target.revision == revision:  # otherwise the primary already holds it: applied before Promoting was written
        tick.act(EnsurePrimary(target.template, revision, tick.primary_replicas))
    primary = tick.obs.primary
    if primary is None or primary.revision != revision or not primary.rolled_out:
        tick.act(SetWeight(desired_weight(tick.spec, tick.old), tick.primary_replicas))
        return
    tick.act(SetWeight(0, tick.primary_replicas))
    name = tick.spec.target_ref.name
    tick.set(phase=Phase.SUCCEEDED, stable_revision=revision, message=f"revision {revision} promoted")
    tick.finish_release("promoted", f"all {len(tick.spec.steps)} steps passed")
    tick.event(
        "Normal",
        "Promoted",
        f"revision {revision} promoted: {name}-primary ready with {primary.ready_replicas} replicas;"
        f" traffic 100% primary, canary scaled to 0",
    )


# ---------------------------------------------------------------- conditions (kstatus)


def _conditions(tick: _Tick) -> list[models.Condition]:
    phase: Phase | None = tick.get("phase")
    message = tick.get("message") or ""
    if tick.stalled is not None:
        reason, message = tick.stalled
        wanted = [
            ("Ready", "False", reason, message),
            ("Stalled", "True", reason, message),
            ("Reconciling", "False", reason, message),
        ]
    elif phase is Phase.ROLLED_BACK:
        wanted = [
            ("Ready", "False", "RolledBack", message),
            ("Stalled", "True", "RolledBack", message),
            ("Reconciling", "False", "RolledBack", message),
        ]
    elif phase is Phase.PAUSED:
        last: models.CheckRecord | None = tick.get("last_check")
        reason = last.cause if last and last.cause else "Inconclusive"
        wanted = [
            ("Ready", "False", reason, message),
            ("Stalled", "True", reason, message),
            ("Reconciling", "False", reason, message),
        ]
    elif phase in (Phase.STABLE, Phase.SUCCEEDED):
        wanted = [
            ("Ready", "True", phase.value, message),
            ("Stalled", "False", phase.value, message),
            ("Reconciling", "False", phase.value, message),
        ]
    else:
        reason = phase.value if phase else "Initializing"
        wanted = [
            ("Ready", "False", reason, message),
            ("Stalled", "False", reason, message),
            ("Reconciling", "True", reason, message),
        ]
    return _merge_conditions(tick.old.conditions, wanted, tick.obs.generation, tick.now)


def _merge_conditions(
    old: list[models.Condition],
    wanted: list[tuple[str, str, str, str]],
    generation: int,
    now: datetime.datetime,
) -> list[models.Condition]:
    previous = {c.type: c for c in old}
    merged = []
    for type_, state, reason, message in wanted:
        before = previous.get(type_)
        # metav1.Time: RFC 3339 in UTC, to the second, as kstatus readers expect.
        since = (
            before.last_transition_time
            if before is not None and before.status == state
            else now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        merged.append(
            models.Condition(
                type=type_,
                status=state,
                reason=reason,
                message=message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    return merged
