"""kstatus conditions (Ready, Stalled, Reconciling) derived from the draft, so Flux and Argo CD understand us."""

from __future__ import annotations

import datetime

from canary_operator import models
from canary_operator.rollouts import drafting

Phase = models.Phase
Reason = models.Reason
Wanted = list[tuple[str, str, str, str]]


def _blocked(reason: str, message: str) -> Wanted:
    return [
        ("Ready", "False", reason, message),
        ("Stalled", "True", reason, message),
        ("Reconciling", "False", reason, message),
    ]


def derive(tick: drafting.Tick) -> list[models.Condition]:
    status = tick.status
    phase = status.phase
    message = status.message or ""
    if tick.stalled is not None:
        reason, message = tick.stalled
        wanted = _blocked(reason, message)
    elif phase is Phase.ROLLED_BACK:
        wanted = _blocked(Reason.ROLLED_BACK, message)
    elif phase is Phase.PAUSED:
        if status.hold is models.Hold.REQUEST:
            reason = Reason.PAUSED_BY_REQUEST
        elif status.hold is models.Hold.DEADLINE:
            reason = Reason.PROGRESS_DEADLINE_EXCEEDED
        else:
            cause = status.last_check.cause if status.last_check else None
            reason = Reason(cause) if cause in set(Reason) else Reason.INCONCLUSIVE
        wanted = _blocked(reason, message)
    elif phase in (Phase.STABLE, Phase.SUCCEEDED):
        wanted = [
            ("Ready", "True", phase.value, message),
            ("Stalled", "False", phase.value, message),
            ("Reconciling", "False", phase.value, message),
        ]
    else:
        progressing = phase.value if phase else Reason.INITIALIZING.value
        wanted = [
            ("Ready", "False", progressing, message),
            ("Stalled", "False", progressing, message),
            ("Reconciling", "True", progressing, message),
        ]
    return merge(tick.old.conditions, wanted + autoscaled(tick), tick.obs.generation, tick.now)


AUTOSCALED = "Autoscaled"


def autoscaled(tick: drafting.Tick) -> Wanted:
    """With ``autoscalerRef``: whether the primary carries the user's HPA (a condition of its own, not kstatus')."""
    if tick.spec.autoscaler_ref is None:
        return []
    if tick.obs.target is None:  # blocked (target gone, spec invalid, a route refused): the HPAs were not read
        return _kept(tick.old.conditions)
    if tick.obs.autoscaler_problem is not None:
        reason, message = tick.obs.autoscaler_problem
        return [(AUTOSCALED, "False", reason, message)]
    name = tick.spec.autoscaler_ref.name
    return [(AUTOSCALED, "True", Reason.AUTOSCALER_CARRIED_OVER, f"the primary carries HorizontalPodAutoscaler {name}")]


def blocked(
    old: list[models.Condition], reason: str, message: str, generation: int, now: datetime.datetime
) -> list[models.Condition]:
    return merge(old, _blocked(reason, message) + _kept(old), generation, now)


def _kept(old: list[models.Condition]) -> Wanted:
    """The Autoscaled condition as it was: not observed meanwhile, and dropping it would tell its Event again."""
    return [(c.type, c.status, c.reason, c.message) for c in old if c.type == AUTOSCALED]


def merge(
    old: list[models.Condition],
    wanted: Wanted,
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
                reason=str(reason),
                message=message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    return merged
