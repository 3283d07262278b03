"""Every name the operator derives from another, in one place.

For a target Deployment ``web``: ``web-primary`` and ``web-canary`` (Deployments and Services) and the
apex Service ``web``. Events get names derived from the rollout and a sequence number, so posting one
twice is refused by the API server instead of showing twice.
"""

from __future__ import annotations


def primary(target: str) -> str:
    return f"{target}-primary"


def canary(target: str) -> str:
    return f"{target}-canary"


def apex(target: str) -> str:
    return target


def event(rollout: str, uid: str, seq: int) -> str:
    return f"{rollout}.{uid[:8] or 'nouid'}.{seq}"
