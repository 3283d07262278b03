"""Gate webhooks as the state machine sees them: open, waiting or failed. Pure.

``webhooks.py`` does the calling and records each answer as a
``models.GateRecord``; this module folds the answers of one gate type into the
one observation a tick needs, so the state machine never waits on HTTP and a
restarted operator judges the same recorded answers the same way.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Sequence

from canary_operator import models


class Gate(enum.StrEnum):
    OPEN = "open"  # every hook of the type answered 2xx, or there is none
    WAITING = "waiting"  # some hook has not answered 2xx yet and may still: ask again next tick
    FAILED = "failed"  # a hook with onFailure: fail refused: roll back (or do not start)


@dataclasses.dataclass(frozen=True)
class GateState:
    gate: Gate
    message: str = ""


def state(
    hooks: Sequence[models.Webhook],
    kind: models.WebhookType,
    answers: Sequence[models.GateRecord],
    revision: str | None = None,
) -> GateState:
    """The gate of ``kind`` for ``revision`` after the latest answer of each of its hooks (a hook never asked
    about that revision is waiting); without a revision, answers about any revision count."""
    latest = {a.name: a for a in answers if a.type == kind.value and (revision is None or a.revision == revision)}
    waiting = []
    for hook in (h for h in hooks if h.type is kind):
        answer = latest.get(hook.name)
        if answer is not None and answer.open:
            continue
        said = answer.message if answer is not None else "not asked yet"
        if answer is not None and hook.failure is models.GateFailure.FAIL:
            return GateState(Gate.FAILED, f"{kind.value} webhook {hook.name} refused: {said}")
        waiting.append(f"{hook.name} ({said})")
    if waiting:
        return GateState(Gate.WAITING, f"waiting for {kind.value} webhook(s): {'; '.join(waiting)}")
    return GateState(Gate.OPEN)


def next_ask_at(
    hooks: Sequence[models.Webhook],
    kind: models.WebhookType,
    answers: Sequence[models.GateRecord],
    revision: str,
    now: datetime.datetime,
    every: float,
) -> datetime.datetime | None:
    """When to ask the gate's hooks about ``revision`` next: ``now`` when never asked, else ``every`` seconds after
    the last question; None when the gate has no hooks or is open (nothing to ask).

    Asking at most once per analysis interval keeps a waiting gate from calling its receiver every tick.
    """
    if not any(h.type is kind for h in hooks) or state(hooks, kind, answers, revision).gate is Gate.OPEN:
        return None
    asked = [datetime.datetime.fromisoformat(a.at) for a in answers if a.type == kind.value and a.revision == revision]
    return max(asked) + datetime.timedelta(seconds=every) if asked else now


def due(
    hooks: Sequence[models.Webhook],
    kind: models.WebhookType,
    answers: Sequence[models.GateRecord],
    revision: str,
    now: datetime.datetime,
    every: float,
) -> bool:
    """Whether to ask the gate's hooks now (``next_ask_at`` has come)."""
    at = next_ask_at(hooks, kind, answers, revision, now, every)
    return at is not None and now >= at


def first_asked(
    answers: Sequence[models.GateRecord], kind: models.WebhookType, revision: str
) -> datetime.datetime | None:
    """When the gate's hooks were first asked about ``revision`` (``since`` of each answer; None: never)."""
    asked = [a.since or a.at for a in answers if a.type == kind.value and a.revision == revision]
    return min((datetime.datetime.fromisoformat(t) for t in asked if t), default=None)


def record(answers: Sequence[models.GateRecord], answer: models.GateRecord) -> list[models.GateRecord]:
    """The status' gate records with ``answer`` replacing the previous answer of the same hook; ``since`` keeps
    when the hook was first asked about that revision (where a gate's deadline starts)."""
    previous = next((a for a in answers if a.name == answer.name), None)
    same = previous is not None and previous.revision == answer.revision
    since = (previous.since or previous.at) if same and previous is not None else answer.at
    return [*(a for a in answers if a.name != answer.name), answer.model_copy(update={"since": since})]


def with_hooks(check: models.CheckRecord, answers: Sequence[models.GateRecord]) -> models.CheckRecord:
    """A check with the answers of its rollout and rollback hooks folded in, as results named ``webhook/<name>``.

    A rollout hook (a load test, a smoke test) that fails makes the check fail, and its streak counts
    towards ``failureThreshold`` like a metric's. A rollback hook that answers 2xx asks for a rollback: a
    failure with p = 0, which ``failFast`` treats as the whole streak at once.
    """
    results = []
    for answer in answers:
        if answer.type == models.WebhookType.ROLLOUT.value:
            verdict = models.Verdict.PASS if answer.open else models.Verdict.FAIL
            results.append(
                models.MetricResult(
                    name=f"webhook/{answer.name}",
                    verdict=verdict,
                    reason=f"rollout webhook {answer.name}: {answer.message}",
                )
            )
        elif answer.type == models.WebhookType.ROLLBACK.value and answer.open:
            results.append(
                models.MetricResult(
                    name=f"webhook/{answer.name}",
                    verdict=models.Verdict.FAIL,
                    reason=f"rollback webhook {answer.name} asked for a rollback: {answer.message}",
                    p_value=0.0,
                )
            )
    failed = [r for r in results if r.verdict is models.Verdict.FAIL]
    if not results:
        return check
    if failed and check.verdict is not models.Verdict.FAIL:
        reason = "; ".join(r.reason for r in failed)
        return check.model_copy(
            update={
                "verdict": models.Verdict.FAIL,
                "reason": reason,
                "cause": None,
                "metrics": [*check.metrics, *results],
                # Pass rule no-harm cleared the metrics, not the hooks: a failed check never advances a step.
                "cleared": False if check.cleared is not None else None,
                "detectable": None,
            }
        )
    return check.model_copy(update={"metrics": [*check.metrics, *results]})
