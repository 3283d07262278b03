"""Gate webhooks as the state machine sees them: open, waiting or failed. Pure.

``webhooks.py`` does the calling and records each answer as a
``models.GateRecord``; this module folds the answers of one gate type into the
one observation a tick needs, so the state machine never waits on HTTP and a
restarted operator judges the same recorded answers the same way.
"""

from __future__ import annotations

import dataclasses
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


def state(hooks: Sequence[models.Webhook], kind: models.WebhookType, answers: Sequence[models.GateRecord]) -> GateState:
    """The gate of ``kind`` after the latest answer of each of its hooks (a hook never asked is waiting)."""
    latest = {a.name: a for a in answers if a.type == kind.value}
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


def record(answers: Sequence[models.GateRecord], answer: models.GateRecord) -> list[models.GateRecord]:
    """The status' gate records with ``answer`` replacing the previous answer of the same hook."""
    return [*(a for a in answers if a.name != answer.name), answer]
