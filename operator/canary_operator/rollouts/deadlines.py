"""When each of the rollout's deadlines passes: one function per deadline, the instant, read from the status.

The state machine decides ``passed(at, now)`` where it compares the clock; ``schedule`` wakes the loop at the
same instant. One function for both, so that the loop never sleeps past a deadline the machine would act on:
a copy that drifts (a phase counted by one and not by the other, records counted by one and not the other)
makes a rollback late or a wake-up idle. All three count ``progressDeadline``; a deadline passes strictly after
its instant (at the instant itself it has not).
"""

from __future__ import annotations

import datetime

from canary_operator import gating, models
from canary_operator.rollouts import plan

Phase = models.Phase


def passed(at: datetime.datetime | None, now: datetime.datetime) -> bool:
    """Whether the deadline at ``at`` has passed by ``now``; None: no deadline runs."""
    return at is not None and now > at


def progress_at(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus) -> datetime.datetime | None:
    """When nothing having progressed for ``progressDeadline`` holds or rolls back the rollout.

    It runs while the operator waits on the cluster or on the data: a takeover, a canary, a promotion. A
    rollout held by a person (a pause by request) or by a deadline that passed already has none; one held for
    inconclusive checks has. It counts from the last progress (or, recorded by an older operator, the step's start).
    """
    phase = status.phase
    held = phase is Phase.PAUSED and status.hold is not models.Hold.INCONCLUSIVE
    if (phase is not Phase.INITIALIZING and phase not in models.EXPOSED_PHASES) or held:
        return None
    since = plan.time(status.last_progress_at) or plan.time(status.step_started_at)
    return _after(spec, since)


def blocked_at(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus) -> datetime.datetime | None:
    """When a canary blocked mid-way (its target gone, its route refused) gives its traffic back, or is held.

    No check runs while it is blocked, so an exposed canary keeps its traffic for ``progressDeadline`` from the
    start of the block at most; an idle rollout blocked has nothing to give back.
    """
    if status.blocked is None or status.phase not in models.EXPOSED_PHASES:
        return None
    return _after(spec, plan.time(status.blocked.since))


def pre_rollout_at(
    spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus, revision: str
) -> datetime.datetime | None:
    """When a pre-rollout gate still shut about ``revision`` makes a stalled release (the stable one serves on).

    It counts from when the gate's hooks were first asked about that revision, and only its own answers count:
    a confirm-promotion answered about the same revision (a retried release) says nothing of how long this
    gate has kept the revision waiting. None until the gate is asked.
    """
    return _after(spec, gating.first_asked(status.gates, models.WebhookType.PRE_ROLLOUT, revision))


def _after(spec: models.CanaryRolloutSpec, since: datetime.datetime | None) -> datetime.datetime | None:
    if since is None:
        return None
    return since + datetime.timedelta(seconds=models.parse_duration(spec.progress_deadline))
