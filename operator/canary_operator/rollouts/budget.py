"""The error-budget policy: whether a canary may start, and how strictly it is judged, by the budget left."""

from __future__ import annotations

import datetime

from canary_operator import models

Band = models.BudgetBand
Action = models.BudgetAction

# (lowest remaining share, band, action); the usual error-budget policy bands.
BANDS = (
    (0.50, Band.HEALTHY, Action.PROCEED),
    (0.25, Band.CAUTION, Action.PROCEED_WITH_WARNING),
    (0.10, Band.WARNING, Action.TIGHTEN),
)


def wanted(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus, revision: str | None) -> bool:
    """Whether this tick may start a canary that an error-budget decision must clear first."""
    return (
        spec.slo is not None
        and status.phase in models.IDLE_PHASES
        and revision is not None
        and revision not in (status.stable_revision, status.rejected_revision)
    )


def decide(remaining: float | None, problem: str, forced: bool, now: datetime.datetime) -> models.BudgetDecision:
    at = now.isoformat()
    if remaining is None:
        # Unknown is never enough by itself; a person may still start the canary (a new service has no history
        # yet, or the release is the fix): its analysis then runs as always.
        action, outcome = (
            (Action.FORCED, "started anyway: canary.dev/force-release")
            if forced
            else (Action.BLOCKED, "the canary waits for it (annotate canary.dev/force-release to start it anyway)")
        )
        return models.BudgetDecision(
            at=at, band=Band.UNKNOWN, action=action, message=f"error budget unknown ({problem}); {outcome}"
        )
    left = f"{max(remaining, 0) * 100:.0f}% of the error budget left"
    for floor, band, action in BANDS:
        if remaining > floor:
            return models.BudgetDecision(at=at, remaining=remaining, band=band, action=action, message=left)
    action, outcome = (
        (Action.FORCED, "started anyway: canary.dev/force-release")
        if forced
        else (Action.BLOCKED, "the canary does not start (annotate canary.dev/force-release to force)")
    )
    return models.BudgetDecision(
        at=at, remaining=remaining, band=Band.EXHAUSTED, action=action, message=f"{left}; {outcome}"
    )


def unchanged(previous: models.BudgetDecision | None, decision: models.BudgetDecision) -> models.BudgetDecision:
    """The previous decision when the new one says the same (band, action, percent left): a canary blocked for
    hours is not a status write at every tick, only when what a person reads changes."""
    if previous is not None and (previous.band, previous.action, previous.message) == (
        decision.band,
        decision.action,
        decision.message,
    ):
        return previous
    return decision


def tighten_factor(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus) -> float:
    """How much the current canary's limits are tightened by its error-budget decision."""
    if spec.slo is not None and status.budget is not None and status.budget.action is Action.TIGHTEN:
        return spec.slo.tighten_factor
    return 1.0
