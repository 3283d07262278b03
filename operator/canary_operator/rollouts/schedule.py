"""When a rollout next has something to do that only the clock brings, so that its loop sleeps until then.

The state machine compares the clock with the recorded status in a few places, and only there: a check
falls due one ``interval`` after the last one (or after the weight settled, ``checks.due``), the
continuous test every ``continuousInterval`` (``checks.continuous_due``), a timed pause ends, the
progress deadline passes, a canary blocked mid-way reaches its deadline, a gate is asked again every
interval (``actions.gates_due``) and a pre-rollout gate's deadline passes. ``next_due`` computes the
earliest of those times from the spec and the status a tick decided, with the very functions the machine
compares the clock with (``checks.next_check_at``, ``checks.next_reading_at``, ``plan.pause_ends_at``,
``deadlines``, ``gating.next_ask_at``), so that the two cannot drift apart. Everything else a tick waits
for (pods becoming ready, a new revision, a request annotation, a spec edit) is a change of the
CanaryRollout or of a Deployment, which wakes the loop (``caching``); after the operator's own writes to
objects no watch reports (routes, Services, HPAs), the loop ticks again within the busy tick (``main``).
A blocked decision (a route or Prometheus refused: fixed where no watch looks) computes no time, so the
loop polls at the busy tick as before.

``wait`` turns that time into the loop's sleep, failing safe: the busy tick when nothing can be
computed while a canary is under way, or when something was due at the tick and the tick did not do
it (it was blocked); the idle resync at the most; never less than a floor. Pure: no clock of its own.
"""

from __future__ import annotations

import dataclasses
import datetime

from canary_operator import gating, models
from canary_operator.rollouts import actions, checks, deadlines, plan

Phase = models.Phase

FLOOR_SECONDS = 0.05  # the shortest sleep, whatever is due: no tight loop on a time a tick cannot reach
MARGIN_SECONDS = 0.01  # wake just after the due time, so that the comparison the tick makes is then true


@dataclasses.dataclass(frozen=True)
class Due:
    """The next time-based thing a rollout has to do."""

    at: datetime.datetime | None  # None: nothing time-based is ahead (only a change can bring progress)
    what: str  # what falls due then: check, continuous, pause, deadline, gate ("" when nothing)
    phase: Phase | None  # the phase the tick decided

    @property
    def busy(self) -> bool:
        """A takeover, a canary or a promotion is under way."""
        return self.phase not in models.IDLE_PHASES


@dataclasses.dataclass(frozen=True)
class Wait:
    """How long the loop sleeps (unless woken by a change), and why: the label of the tick's telemetry."""

    seconds: float
    until: str  # check, continuous, pause, deadline, gate, overdue, unsure, retry or resync


def next_due(
    spec: models.CanaryRolloutSpec,
    status: models.CanaryRolloutStatus,
    now: datetime.datetime,
    target_revision: str | None = None,
) -> Due:
    """The earliest time after which a tick on the same observations would decide something new.

    Recurring work (checks, gate questions) is returned even when already due (at or before ``now``): the
    tick that computed this status did not do it. The end of a pause and a deadline are returned only
    while ahead: once passed, the tick at ``now`` saw it and acted. ``target_revision`` is the revision a
    pre-rollout gate waits for (the target's, as observed); without it, that gate is left to the resync.
    """
    phase = status.phase
    found: list[tuple[datetime.datetime, str]] = []
    check = checks.next_check_at(spec, status, now)
    if check is not None:
        found.append((check, "check"))
    continuous = checks.next_reading_at(spec, status)  # a check due then is taken instead: it carries the evidence
    if continuous is not None:
        found.append((continuous, "continuous"))
    ends = plan.pause_ends_at(spec, status) if phase is Phase.PROGRESSING else None
    if ends is not None and ends > now:  # once over, what the step waits for is a check (or a gate), due on its own
        found.append((ends, "pause"))
    for deadline in (deadlines.progress_at(spec, status), deadlines.blocked_at(spec, status)):
        if deadline is not None and not deadlines.passed(deadline, now):
            found.append((deadline, "deadline"))
    found.extend(_gates_at(spec, status, now, target_revision))
    if not found:
        return Due(None, "", phase)
    at, what = min(found, key=lambda item: item[0])
    return Due(at, what, phase)


def nothing_due(status: models.CanaryRolloutStatus) -> Due:
    """A decision that took no clock into account (blocked): the loop ticks as if it could not tell."""
    return Due(None, "", status.phase)


def wait(
    due: Due | None,
    decided_at: datetime.datetime,
    now: datetime.datetime,
    tick_seconds: float,
    idle_tick_seconds: float,
) -> Wait:
    """The loop's sleep after a tick decided at ``decided_at``; ``due`` None when the tick decided nothing.

    At most the idle resync (``max(tick, idle)``, as an idle rollout always had), at least the floor; the
    busy tick when unsure: a failed tick, nothing computable while a canary is under way, or something
    due at the tick that the tick did not do (blocked: an ownership conflict, the target gone).
    """
    resync = max(tick_seconds, idle_tick_seconds)
    if due is None:
        return Wait(tick_seconds, "retry")
    if due.at is None:
        return Wait(tick_seconds, "unsure") if due.busy else Wait(resync, "resync")
    if due.at <= decided_at:
        return Wait(tick_seconds, "overdue")
    left = (due.at - now).total_seconds() + MARGIN_SECONDS
    if left >= resync:
        return Wait(resync, "resync")
    return Wait(max(left, FLOOR_SECONDS), due.what)


def _gates_at(
    spec: models.CanaryRolloutSpec,
    status: models.CanaryRolloutStatus,
    now: datetime.datetime,
    target_revision: str | None,
) -> list[tuple[datetime.datetime, str]]:
    """The next question to a pending gate (``actions.gates_due``), and a waiting pre-rollout gate's deadline."""
    found: list[tuple[datetime.datetime, str]] = []
    every = spec.analysis.interval_seconds
    for kind, revision in actions.gates_pending(spec, status, target_revision):
        ask = gating.next_ask_at(spec.webhooks, kind, status.gates, revision, now, every)
        if ask is None:
            continue
        found.append((ask, "gate"))
        waiting = gating.state(spec.webhooks, kind, status.gates, revision).gate is gating.Gate.WAITING
        if kind is models.WebhookType.PRE_ROLLOUT and waiting:
            deadline = deadlines.pre_rollout_at(spec, status, revision)
            if deadline is not None and not deadlines.passed(deadline, now):
                found.append((deadline, "deadline"))
    return found
