"""The rollout state machine, split by concern; this module is its public face.

- ``machine``: the phases and their transitions (``reconcile``), pure;
- ``checks``: when a check is due and how it is folded in; ``requests``: the one-shot annotations;
- ``budget``: the error-budget policy; ``conditions``: the kstatus conditions;
- ``plan``: what the steps ask for; ``deadlines``: when each deadline passes;
- ``drafting``: one tick's draft of the next status and its Events;
- ``actions``: what the cluster must look like, derived from the recorded status (record, then act);
- ``schedule``: when the clock next brings the rollout something to do, and how long its loop sleeps.
"""

from canary_operator.rollouts.actions import (
    Action,
    ClearRequest,
    EnsureCanary,
    EnsurePrimary,
    EnsureServices,
    Needs,
    ScaleTarget,
    SetWeight,
    derive,
    give_back,
    needs,
    primary_intent,
)
from canary_operator.rollouts.drafting import Decision
from canary_operator.rollouts.machine import RECONCILE_ERRORS_TO_STALL, blocked, failed, reconcile
from canary_operator.rollouts.schedule import Due, Wait, next_due, nothing_due, wait

__all__ = [
    "RECONCILE_ERRORS_TO_STALL",
    "Action",
    "ClearRequest",
    "Decision",
    "Due",
    "EnsureCanary",
    "EnsurePrimary",
    "EnsureServices",
    "Needs",
    "ScaleTarget",
    "SetWeight",
    "Wait",
    "blocked",
    "derive",
    "failed",
    "give_back",
    "needs",
    "next_due",
    "nothing_due",
    "primary_intent",
    "reconcile",
    "wait",
]
