"""The release plan: what the steps ask for at a given position, derived and never accumulated.

The weight in force is ``steps[currentStepIndex]`` (the last ``setWeight`` at or before it), so a
restarted operator, or a status written by an older one, always lands on the same weight.
"""

from __future__ import annotations

import datetime
import hashlib
import json

from canary_operator import models


def time(text: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(text) if text else None


def step_weight(steps: list[models.Step], index: int) -> int:
    """The canary weight in force at step ``index``: the last setWeight at or before it."""
    for step in reversed(steps[: index + 1]):
        if step.set_weight is not None:
            return step.set_weight
    return 0


def current_index(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus) -> int:
    """The step the status points at, kept inside the plan even if the plan shrank since it was written."""
    return min(status.current_step_index or 0, len(spec.steps) - 1)


def pause_ends_at(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus) -> datetime.datetime | None:
    """When the current step's timed pause is over, counted from the step's start (None: the step is no timed
    pause, or its start is not recorded)."""
    step = spec.steps[current_index(spec, status)]
    started = time(status.step_started_at)
    if step.pause is None or step.pause.seconds is None or started is None:
        return None
    return started + datetime.timedelta(seconds=step.pause.seconds)


def primary_replicas(target_replicas: int | None) -> int:
    """The primary's size: what the target had when taken over (or was scaled to since); 1 before that."""
    return 1 if target_replicas is None else int(target_replicas)


def desired_weight(spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus) -> int:
    if status.phase in models.EXPOSED_PHASES:
        return step_weight(spec.steps, current_index(spec, status))
    return 0


def digest(steps: list[models.Step]) -> str:
    """A short fingerprint of the steps: a canary whose plan changed under it starts the plan again."""
    wire = [step.model_dump(mode="json", by_alias=True, exclude_none=True) for step in steps]
    return hashlib.sha256(json.dumps(wire, sort_keys=True).encode()).hexdigest()[:12]


def summary(steps: list[models.Step]) -> str:
    parts = []
    for step in steps:
        if step.set_weight is not None:
            parts.append(f"{step.set_weight}%")
        elif step.pause is not None:
            parts.append(f"pause {step.pause.duration}" if step.pause.duration else "pause until promoted")
        elif step.set_header_route is not None:
            parts.append(
                f"header route {step.set_header_route.name}" if step.set_header_route.match else "no header route"
            )
        elif step.set_cookie_route is not None:
            cookie = step.set_cookie_route
            parts.append(
                f"cookie route {cookie.cookie_name}={cookie.value}" if cookie.cookie_name else "no cookie route"
            )
    return " -> ".join(parts)
