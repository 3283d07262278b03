"""Telling people about transitions: a generic JSON webhook or a Slack-compatible message.

The state machine's Events are the transitions (one per transition, never one
per check); this module picks those a person cares about, phrases them with
the numbers behind them, and sends each once: a ``Deduplicator`` drops the same
notification (rollout, notifier, event, revision) seen again within a quiet
period, so a state that flaps (paused, resumed, paused) does not spam a channel.
Delivery uses ``webhooks.post_json`` (bounded timeout and retries).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp

from canary_operator import kube, models, webhooks

Event = models.NotificationEvent

# The Event reasons of the state machine that are notifications.
REASONS: Mapping[str, Event] = {
    models.Reason.CANARY_STARTED: Event.STARTED,
    models.Reason.STEP_ADVANCED: Event.STEP_PASSED,
    models.Reason.PAUSED: Event.PAUSED,
    models.Reason.PAUSED_BY_REQUEST: Event.PAUSED,
    models.Reason.PROMOTED: Event.PROMOTED,
    models.Reason.ROLLED_BACK: Event.ROLLED_BACK,
    models.Reason.ABORTED: Event.ROLLED_BACK,
    models.Reason.PROGRESS_DEADLINE_EXCEEDED: Event.HELD,
    models.Reason.BLOCKED_DEADLINE_EXCEEDED: Event.HELD,
    models.Reason.ERROR_BUDGET_EXHAUSTED: Event.HELD,
    models.Reason.ERROR_BUDGET_UNKNOWN: Event.HELD,
    models.Reason.WEBHOOK_REFUSED: Event.HELD,  # a gate shut: not started, or not promoted
}
COLORS = {
    Event.STARTED: "#439FE0",
    Event.STEP_PASSED: "#439FE0",
    Event.PAUSED: "warning",
    Event.HELD: "warning",
    Event.PROMOTED: "good",
    Event.ROLLED_BACK: "danger",
}
TITLES = {
    Event.STARTED: "canary started",
    Event.STEP_PASSED: "step passed",
    Event.PAUSED: "canary paused",
    Event.HELD: "canary held",
    Event.PROMOTED: "promoted",
    Event.ROLLED_BACK: "rolled back",
}


@dataclasses.dataclass(frozen=True)
class Notice:
    """One transition to tell about."""

    event: Event
    namespace: str
    name: str
    message: str  # the Event's own message: the outcome and the numbers
    status: models.CanaryRolloutStatus
    at: datetime.datetime

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        step = str(self.status.current_step_index) if self.event is Event.STEP_PASSED else ""
        return (self.namespace, self.name, self.event.value, self.status.canary_revision or "", step)


def notices(
    namespace: str,
    name: str,
    events: Iterable[tuple[str, str]],
    status: models.CanaryRolloutStatus,
    now: datetime.datetime,
) -> list[Notice]:
    """The notifications among one tick's Events, given as (reason, message)."""
    return [
        Notice(event_of(reason, status, message), namespace, name, message, status, now)
        for reason, message in events
        if reason in REASONS
    ]


# These end a release by rolling it back or hold it: the deadlines (by progressDeadlineAbort, true by default),
# and a shut gate (a confirm-promotion refusal with onFailure fail rolls back; a pre-rollout one never starts it).
_ROLLBACK_OR_HOLD = frozenset(
    {
        models.Reason.PROGRESS_DEADLINE_EXCEEDED,
        models.Reason.BLOCKED_DEADLINE_EXCEEDED,
        models.Reason.WEBHOOK_REFUSED,
    }
)


def event_of(reason: str, status: models.CanaryRolloutStatus, message: str) -> Event:
    """The notification an Event reason is: one that rolled this tick's canary back is a rollback, not a hold.

    The status alone cannot tell: after a release rolled back, a pre-rollout gate refusing the next revision
    leaves the same phase, canary and rejected revision. The Event's own message can (``machine._rollback``
    writes "revision <canary> rolled back"; a pre-rollout refusal, "revision <next> not started").
    """
    rolled_back = (
        status.phase is models.Phase.ROLLED_BACK
        and status.rejected_revision == status.canary_revision
        and message.startswith(f"revision {status.canary_revision} rolled back")
    )
    if reason in _ROLLBACK_OR_HOLD and rolled_back:
        return Event.ROLLED_BACK
    return REASONS[reason]


def _metrics(status: models.CanaryRolloutStatus) -> list[dict[str, Any]]:
    check = status.last_check
    if check is None:
        return []
    return [
        {
            "name": m.name,
            "verdict": m.verdict.value,
            "canary": m.canary,
            "primary": m.primary,
            "canaryRequests": m.canary_requests,
            "primaryRequests": m.primary_requests,
            "limit": m.limit,
        }
        for m in check.metrics
    ]


def json_body(notice: Notice) -> dict[str, Any]:
    status = notice.status
    return {
        "event": notice.event.value,
        "name": notice.name,
        "namespace": notice.namespace,
        "message": notice.message,
        "phase": status.phase.value if status.phase else None,
        "revision": status.canary_revision,
        "stableRevision": status.stable_revision,
        "release": status.release_id,
        "step": status.step,
        "weight": status.weight,
        "lastVerdict": status.last_verdict,
        "metrics": _metrics(status),
        "at": notice.at.isoformat(),
    }


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def slack_body(notice: Notice) -> dict[str, Any]:
    """An incoming-webhook message: a one-line outcome, then the numbers as attachment fields."""
    status = notice.status
    title = TITLES[notice.event]
    text = f"*{notice.namespace}/{notice.name}* {title}: revision `{status.canary_revision or '-'}`"
    fields = [
        {"title": "Phase", "value": status.phase.value if status.phase else "-", "short": True},
        {"title": "Step / weight", "value": f"{status.step or '-'} at {status.weight}%", "short": True},
    ]
    for metric in _metrics(status):
        fields.append(
            {
                "title": f"{metric['name']}: {metric['verdict']}",
                "value": f"canary {_figure(metric['canary'])} (n={metric['canaryRequests'] or 0}),"
                f" primary {_figure(metric['primary'])} (n={metric['primaryRequests'] or 0}),"
                f" limit {metric['limit'] or '-'}",
                "short": False,
            }
        )
    attachment = {"color": COLORS[notice.event], "text": notice.message, "fields": fields}
    return {"text": text, "attachments": [attachment]}


class Deduplicator:
    """Remembers what was sent, so the same notice within ``quiet`` is sent once."""

    def __init__(self, quiet: datetime.timedelta = datetime.timedelta(minutes=10)) -> None:
        self.quiet = quiet
        self._sent: dict[tuple[str, ...], datetime.datetime] = {}

    def admit(self, notifier: str, notice: Notice) -> bool:
        key = (notifier, *notice.key)
        last = self._sent.get(key)
        if last is not None and notice.at - last < self.quiet:
            return False
        self._sent[key] = notice.at
        # Forget what is older than the quiet period: the memory stays as small as one period's traffic.
        self._sent = {k: t for k, t in self._sent.items() if notice.at - t < self.quiet}
        return True


async def send(
    session: aiohttp.ClientSession,
    api: kube.Client,
    notifier: models.Notification,
    notice: Notice,
    dedup: Deduplicator,
    sleep: webhooks.Sleep = asyncio.sleep,
) -> webhooks.Answer | None:
    """Send one notice to one notifier; None when it is not for that notifier or was sent already."""
    if notice.event not in notifier.events or not dedup.admit(notifier.name, notice):
        return None
    try:
        headers = (
            await webhooks.secret_data(api, notice.namespace, notifier.headers_from) if notifier.headers_from else {}
        )
        url = str(notifier.url) if notifier.url is not None else None
        if notifier.url_from is not None:
            data = await webhooks.secret_data(api, notice.namespace, notifier.url_from.name)
            url = data.get(notifier.url_from.key)
            if not url:
                raise KeyError(f"Secret {notifier.url_from.name} has no key {notifier.url_from.key}")
    except KeyError as exc:
        return webhooks.Answer(False, None, 0, str(exc.args[0]))
    assert url is not None  # the model requires url or urlFrom
    body = slack_body(notice) if notifier.format == "slack" else json_body(notice)
    return await webhooks.post_json(
        session, url, body, timeout=notifier.timeout_seconds, retries=notifier.retries, headers=headers, sleep=sleep
    )
