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
    """The acknowledged request's annotation is gone: a new one with the same value is a new request."""
    last = tick.status.last_request
    if last is not None and not last.cleared:
        present = tick.obs.request(last.request)
        if present is None or present.value != last.value:
            tick.status.last_request = last.model_copy(update={"cleared": True})


def pending(tick: drafting.Tick) -> observations.Request | None:
    """The request to act on this tick, if any (leftovers of acknowledged requests excluded)."""
    last = tick.status.last_request
    for kind in PRIORITY:
        found = tick.obs.request(kind)
        if found is None:
            continue
        if last is not None and not last.cleared and last.request is kind and last.value == found.value:
            continue
        return found
    return None


def acknowledge(tick: drafting.Tick, request: observations.Request, outcome: str) -> None:
    tick.status.last_request = models.RequestRecord(
        request=request.kind, value=request.value, at=tick.now_text, outcome=outcome
    )


def ignore(tick: drafting.Tick, request: observations.Request, why: str) -> None:
    acknowledge(tick, request, f"ignored: {why}")
    tick.event(
        models.EventType.WARNING,
        models.Reason.REQUEST_IGNORED,
        f"{request.kind.annotation}={request.value!r} ignored: {why}; the annotation is removed",
    )
