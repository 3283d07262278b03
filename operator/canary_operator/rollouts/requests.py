"""One-shot requests written as annotations (``canary.dev/promote``, ``abort``, ``retry``, ``pause``, ``resume``,
``force-release``): each applies to what is waiting when it is acknowledged, never later.

A request is acknowledged in the status (``lastRequest``) together with what it did, in the same write as
the transition it caused; the I/O edge then removes the annotation. A request that finds nothing to act on
is acknowledged as ignored (with an Event) and removed too, not kept for a later gate. An annotation still
present with the value of a request already acknowledged (the operator stopped before removing it) is a
leftover: it is removed, never acted on twice.
"""

from __future__ import annotations

from canary_operator import models, observations
from canary_operator.rollouts import drafting

Request = models.Request

# When several requests are present, the one that protects users most goes first; the rest wait a tick.
PRIORITY = (Request.ABORT, Request.PAUSE, Request.RESUME, Request.RETRY, Request.PROMOTE, Request.FORCE_RELEASE)


def note_cleared(tick: drafting.Tick) -> None:
    """Acknowledged requests whose annotation is gone are forgotten: the same value again is a new request."""
    kept = [r for r in tick.status.requests if leftover(tick.obs, r)]
    if kept != tick.status.requests:
        tick.status.requests = kept
    last = tick.status.last_request
    if last is not None and not last.cleared and not leftover(tick.obs, last):
        tick.status.last_request = last.model_copy(update={"cleared": True})


def leftover(obs: observations.Observations, record: models.RequestRecord) -> bool:
    """The annotation of an acknowledged request is still on the object, with the value that was acknowledged."""
    present = obs.request(record.request)
    return present is not None and present.value == record.value


def pending(tick: drafting.Tick) -> observations.Request | None:
    """The request to act on this tick, if any (leftovers of acknowledged requests excluded)."""
    acknowledged = {(r.request, r.value) for r in tick.status.requests}
    for kind in PRIORITY:
        found = tick.obs.request(kind)
        if found is not None and (kind, found.value) not in acknowledged:
            return found
    return None


def acknowledge(tick: drafting.Tick, request: observations.Request, outcome: str) -> None:
    record = models.RequestRecord(request=request.kind, value=request.value, at=tick.now_text, outcome=outcome)
    tick.status.last_request = record
    tick.status.requests = [*(r for r in tick.status.requests if r.request is not request.kind), record]


def ignore(tick: drafting.Tick, request: observations.Request, why: str) -> None:
    acknowledge(tick, request, f"ignored: {why}")
    tick.event(
        models.EventType.WARNING,
        models.Reason.REQUEST_IGNORED,
        f"{request.kind.annotation}={request.value!r} ignored: {why}; the annotation is removed",
    )
