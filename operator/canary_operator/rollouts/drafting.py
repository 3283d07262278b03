"""One tick's working state: the draft of the next status, the Events it records, the releases it ends.

The draft is a copy of the status read this tick, changed field by field (typed, checked by mypy);
nothing here talks to the outside. Events are recorded in the draft's outbox (``pendingEvents``) with a
sequence number, so they are written together with the transition they tell of and posted after it.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import TYPE_CHECKING

from canary_operator import models, observations
from canary_operator.rollouts import plan

if TYPE_CHECKING:  # schedule reads checks, which drafts: the type only, no import cycle
    from canary_operator.rollouts import schedule

RECENT_RELEASES = 10


@dataclasses.dataclass(frozen=True)
class Decision:
    """What one tick decided: the next status (with its intent and its outbox) and what it ended."""

    status: models.CanaryRolloutStatus
    events: tuple[models.EventRecord, ...] = ()  # recorded this tick (also in status.pending_events)
    finished: tuple[models.ReleaseRecord, ...] = ()  # releases that reached a verdict this tick
    restored: models.ReleaseRecord | None = None  # a rolled-back release whose traffic is back on the primary
    due: schedule.Due | None = None  # when the clock next brings something to do (None: not computed)


def add_event(
    draft: models.CanaryRolloutStatus,
    type_: models.EventType,
    reason: models.Reason,
    message: str,
    now: datetime.datetime,
) -> models.EventRecord:
    """Record an Event in the draft's outbox; it names the release it is about, so one release's story can be
    filtered out of a namespace's Events."""
    release = draft.release_id
    seq = draft.event_seq + 1
    record = models.EventRecord(
        seq=seq,
        type=type_,
        reason=reason,
        message=f"{message} [release {release}]" if release else message,
        at=now.isoformat(),
    )
    draft.event_seq = seq
    draft.pending_events = [*draft.pending_events, record]
    return record


class Tick:
    def __init__(
        self,
        spec: models.CanaryRolloutSpec,
        status: models.CanaryRolloutStatus,
        obs: observations.Observations,
        now: datetime.datetime,
    ) -> None:
        self.spec = spec
        self.old = status
        self.status = status.model_copy(deep=True)
        self.obs = obs
        self.now = now
        self.stalled: tuple[models.Reason, str] | None = None  # progress is blocked: why
        self.events: list[models.EventRecord] = []
        self.finished: list[models.ReleaseRecord] = []
        self.restored: models.ReleaseRecord | None = None
        self.due: schedule.Due | None = None

    @property
    def now_text(self) -> str:
        return self.now.isoformat()

    @property
    def primary_replicas(self) -> int:
        return plan.primary_replicas(self.status.target_replicas)

    @property
    def target_name(self) -> str:
        return self.spec.target_ref.name

    def event(self, type_: models.EventType, reason: models.Reason, message: str) -> None:
        self.events.append(add_event(self.status, type_, reason, message, self.now))

    def progressed(self) -> None:
        """Something the rollout waited for happened: the progress deadline starts again."""
        self.status.last_progress_at = self.now_text

    def finish_release(self, outcome: models.Outcome, reason: str, **extra: object) -> models.ReleaseRecord | None:
        status = self.status
        started = plan.time(status.canary_started_at)
        if status.release_id is None or started is None or status.canary_revision is None:
            return None
        record = models.ReleaseRecord.model_validate(
            {
                "release_id": status.release_id,
                "revision": status.canary_revision,
                "outcome": outcome,
                "started_at": started.isoformat(),
                "finished_at": self.now_text,
                "duration_seconds": round((self.now - started).total_seconds(), 3),
                "reason": reason,
                **extra,
            }
        )
        self.finished.append(record)
        status.releases = [*status.releases, record][-RECENT_RELEASES:]
        return record

    def decision(self) -> Decision:
        return Decision(self.status, tuple(self.events), tuple(self.finished), self.restored, self.due)
