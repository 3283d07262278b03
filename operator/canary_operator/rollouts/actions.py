"""What the cluster must look like, derived from the *recorded* status: the intent the I/O edge converges to.

Nothing here is decided: the state machine records a transition and its intent (which template the
primary runs, which weight the canary gets, how many replicas) in the status first; these actions are
computed from that status alone (plus what the cluster already is), and each one is idempotent. So a
process killed at any instant, or a status write refused with 409, converges to the same end state, and
a rollback written once can never be undone by a restart.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from canary_operator import gating, models, observations
from canary_operator.rollouts import budget, checks, plan

Phase = models.Phase


@dataclasses.dataclass(frozen=True)
class EnsureServices:
    pass


@dataclasses.dataclass(frozen=True)
class EnsurePrimary:
    template: Mapping[str, Any]
    revision: str
    replicas: int | None  # None: keep the primary's size (an autoscaler sets it)


@dataclasses.dataclass(frozen=True)
class EnsureCanary:
    template: Mapping[str, Any]
    revision: str


@dataclasses.dataclass(frozen=True)
class SetWeight:
    weight: int
    primary_replicas: int


@dataclasses.dataclass(frozen=True)
class ScaleTarget:
    replicas: int


@dataclasses.dataclass(frozen=True)
class ClearRequest:
    """Remove an acknowledged request annotation, only if it still holds the value that was acknowledged."""

    annotation: str
    value: str


Action = EnsureServices | EnsurePrimary | EnsureCanary | SetWeight | ScaleTarget | ClearRequest


def primary_intent(status: models.CanaryRolloutStatus) -> tuple[Mapping[str, Any], str] | None:
    """The template (and its revision) the primary must run: the promoted one, or the one being promoted."""
    if status.phase is Phase.PROMOTING and status.promoting_template is not None and status.canary_revision:
        return status.promoting_template, status.canary_revision
    if status.stable_template is not None and status.stable_revision is not None:
        return status.stable_template, status.stable_revision
    return None


def derive(
    spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus, obs: observations.Observations
) -> tuple[Action, ...]:
    """The actions that make the cluster what ``status`` says, in the order that is safe for users.

    Under an autoscaler (``obs.hpa_replicas``) the primary keeps the size its HPA set; Services that differ
    from the ones last made (``obs.services_digest`` against ``status.servicesDigest``) are made again.
    """
    if status.blocked is not None and status.blocked.gave_back:
        found = list(give_back(status, obs))
    else:
        found = list(_converge(spec, status, obs))
    wanted = obs.services_digest
    remake = wanted is not None and status.services_digest != wanted
    if found and remake and not any(isinstance(a, EnsureServices) for a in found):
        # service.port or the router changed in Git, or an older operator made them: made again, and
        # the digest recorded only once they are (the edge writes it after acting).
        found.append(EnsureServices())
    return tuple(found)


def _converge(
    spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus, obs: observations.Observations
) -> tuple[Action, ...]:
    phase = status.phase
    target = obs.target
    if phase is None or target is None:
        return ()
    replicas = plan.primary_replicas(status.target_replicas)
    weight = _set_weight(plan.desired_weight(spec, status), replicas, obs)
    found: list[Action] = []
    if weight.weight == 0:
        found.append(weight)  # traffic back on the primary first: it is what users are waiting for
    if phase is Phase.INITIALIZING:
        found.append(EnsureServices())
    primary = primary_intent(status)
    if primary is not None:
        found.append(_ensure_primary(primary, replicas, obs))
    exposed = phase in models.EXPOSED_PHASES
    if exposed and status.canary_revision is not None and target.revision == status.canary_revision:
        found.append(EnsureCanary(target.template, target.revision))
    elif obs.canary is None and primary is not None:
        found.append(EnsureCanary(primary[0], primary[1]))  # the idle arm, at 0 replicas, for the router
    if weight.weight != 0:
        found.append(weight)
    keeps_pods = spec.target_ref.scale_down is models.ScaleDown.NEVER
    if phase is not Phase.INITIALIZING and target.replicas > 0 and not keeps_pods:
        found.append(ScaleTarget(0))
    for record in status.requests:
        present = obs.request(record.request)
        if present is not None and present.value == record.value:
            found.append(ClearRequest(record.request.annotation, record.value))
    return tuple(found)


def give_back(status: models.CanaryRolloutStatus, obs: observations.Observations) -> tuple[Action, ...]:
    """A rollback recorded while blocked (``blocked.gaveBack``): the traffic back on the primary, nothing else.

    The weight goes to 0 (the router scales the canary down once no traffic reaches it), and the primary is put
    back on the stable template (a promotion may have been under way) when the target is there to build it
    from. The target is not scaled and no request is cleared: the spec that would say how may be invalid.
    """
    replicas = plan.primary_replicas(status.target_replicas)
    found: list[Action] = [_set_weight(0, replicas, obs)]
    primary = primary_intent(status)
    if obs.target is not None and primary is not None:
        found.append(_ensure_primary(primary, replicas, obs))
    return tuple(found)


def _set_weight(weight: int, planned: int, obs: observations.Observations) -> SetWeight:
    """The weight, with the primary's size the router's math uses: the HPA's under an autoscaler."""
    return SetWeight(weight, planned if obs.hpa_replicas is None else obs.hpa_replicas)


def _ensure_primary(
    primary: tuple[Mapping[str, Any], str], planned: int, obs: observations.Observations
) -> EnsurePrimary:
    """The primary on its template; under an autoscaler its size is the HPA's, never written back."""
    return EnsurePrimary(primary[0], primary[1], planned if obs.hpa_replicas is None else None)


@dataclasses.dataclass(frozen=True)
class Needs:
    """What the I/O edge must observe this tick for the state machine to decide."""

    weight: int  # the weight the router is asked about
    primary_replicas: int
    check: bool  # take a check (measurements) now
    check_since: datetime.datetime | None  # the canary's start: evidence accumulates from here
    step_since: datetime.datetime | None  # this step's weight settled: the pass rule counts requests from here
    continuous: bool  # run the continuous (always-valid) test of the counts since the start now
    budget: bool  # read the error budget: a canary may start
    tighten: float  # the error-budget factor on the limits of this canary's checks
    gates: tuple[tuple[models.WebhookType, str], ...] = ()  # gate webhooks to ask now, and about which revision


def needs(
    spec: models.CanaryRolloutSpec,
    status: models.CanaryRolloutStatus,
    target_revision: str | None,
    now: datetime.datetime,
) -> Needs:
    return Needs(
        weight=plan.desired_weight(spec, status),
        primary_replicas=plan.primary_replicas(status.target_replicas),
        check=checks.due(spec, status, now),
        check_since=plan.time(status.canary_started_at),
        step_since=plan.time(status.weight_settled_at),
        continuous=checks.continuous_due(spec, status, now),
        budget=budget.wanted(spec, status, target_revision),
        tighten=budget.tighten_factor(spec, status),
        gates=gates_due(spec, status, target_revision, now),
    )


def gates_pending(
    spec: models.CanaryRolloutSpec, status: models.CanaryRolloutStatus, target_revision: str | None
) -> tuple[tuple[models.WebhookType, str], ...]:
    """The gates the rollout may wait on, and about which revision: pre-rollout before a new revision starts,
    confirm-promotion at the last step (or once promote=full). Whether a gate has hooks is ``gating``'s to say."""
    found: list[tuple[models.WebhookType, str]] = []
    if (
        status.phase in models.IDLE_PHASES
        and target_revision is not None
        and target_revision not in (status.stable_revision, status.rejected_revision)
    ):
        found.append((models.WebhookType.PRE_ROLLOUT, target_revision))
    last_step = (status.current_step_index or 0) >= len(spec.steps) - 1 or status.promote_full
    if status.phase is Phase.PROGRESSING and last_step and status.canary_revision is not None:
        found.append((models.WebhookType.CONFIRM_PROMOTION, status.canary_revision))
    return tuple(found)


def gates_due(
    spec: models.CanaryRolloutSpec,
    status: models.CanaryRolloutStatus,
    target_revision: str | None,
    now: datetime.datetime,
) -> tuple[tuple[models.WebhookType, str], ...]:
    """The pending gates to ask now (``gating.due``: at most once per analysis interval while not open)."""
    every = spec.analysis.interval_seconds
    return tuple(
        (kind, revision)
        for kind, revision in gates_pending(spec, status, target_revision)
        if gating.due(spec.webhooks, kind, status.gates, revision, now, every)
    )
