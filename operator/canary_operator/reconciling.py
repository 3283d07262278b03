"""One tick of a CanaryRollout, with its I/O: observe, decide (pure), record, then act.

The protocol (see docs/design.md, "Record, then act"):

1. Post any Events a previous tick recorded but could not confirm (the outbox in ``pendingEvents``).
2. Read the CanaryRollout and the Deployments; ask the state machine what else it needs (a check, the
   error budget) and observe that.
3. Decide (``rollouts.reconcile``, pure) and write the next status in ONE patch guarded by the
   ``resourceVersion`` that was read. A 409 drops the decision: nothing was done, the next tick decides
   again from what is then recorded.
4. Converge the cluster to the recorded intent (``rollouts.derive``): every action is idempotent and
   derived from the status alone, so a process killed anywhere repeats, never reverses, what was recorded.
5. Post the recorded Events under names derived from their sequence number (a repost is refused as
   already existing), then write what only acting made true in one more patch: the outbox cleared, the
   Services recorded as made, a run of failed ticks ended: two status patches for a busy tick.

Kopf's error types are not used here: the handlers in ``main.py`` translate ours.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import re
from collections.abc import Coroutine, Mapping
from typing import Any, Protocol

import aiohttp
import pydantic

from canary_operator import (
    autoscaling,
    caching,
    endpoints,
    gating,
    judging,
    kube,
    logs,
    measuring,
    models,
    names,
    notifications,
    observations,
    ownership,
    providers,
    rollouts,
    routing,
    telemetry,
    webhooks,
    workloads,
)


class MetricSource(Protocol):
    """Where a rollout's metric provider comes from (``endpoints.Source`` in the operator)."""

    def check(self, analysis: models.Analysis) -> None:
        """``endpoints.AccessError`` when the analysis' provider cannot be used at all (no I/O)."""
        ...

    async def provider(self, api: kube.Client, namespace: str, analysis: models.Analysis) -> providers.MetricProvider:
        """A provider for one check, credentials resolved; ``endpoints.AccessError`` otherwise."""
        ...


GATE_TYPES = frozenset(kind.value for kind in models.GATES)


Body = dict[str, Any]


class NotYet(Exception):
    """Deletion must wait (for the user's Deployment to be ready again); try again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


async def tick(
    api: kube.Client,
    namespace: str,
    name: str,
    now: datetime.datetime,
    metrics: MetricSource,
    *,
    rollout: Mapping[str, Any] | None = None,
    deployments: caching.Deployments | None = None,
) -> rollouts.Decision | None:
    """Reconcile one CanaryRollout once; None when it is gone, being deleted, or changed under us (409).

    ``rollout`` (the body the watch holds) and ``deployments`` (the watch cache) spare the GETs; a
    stale body costs a 409 on the status write, which drops the decision: nothing is done twice.
    """
    body = copy.deepcopy(dict(rollout)) if rollout is not None else await api.get(kube.rollout_path(namespace, name))
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    status = models.parse_status(body.get("status"))
    logs.bind_rollout(namespace, name, status)
    if status.pending_events:
        body = await _post_events(api, body, status)
        status = models.parse_status(body.get("status"))
    generation = int(body["metadata"].get("generation") or 1)
    applied = _applied_spec(status)
    try:
        spec = models.parse_spec(body.get("spec"))
    except pydantic.ValidationError as exc:
        message = f"invalid spec: {models.explain(exc)}"
        blocked = Blocked(models.Reason.INVALID_SPEC, message, deadline=applied, acting=applied)
        return await _blocked(api, body, status, generation, blocked, now, deployments)
    if status.target is not None and status.target != spec.target_ref.name:
        # The arms, the Services and the recorded templates are those of the Deployment taken over: following
        # another one would put its pods in place of the other's. Nothing is touched until it is set back, but a
        # canary under way is given back at its deadline, with the spec (and so the target) last acted with.
        message = (
            f"invalid spec: spec.targetRef.name changed from {status.target} to {spec.target_ref.name}; a"
            f" CanaryRollout releases the Deployment it took over: set it back, or delete this CanaryRollout"
            f" (which gives {status.target} back) and create one for {spec.target_ref.name}"
        )
        taken_over = spec.target_ref.model_copy(update={"name": status.target})
        acting = applied or spec.model_copy(update={"target_ref": taken_over})
        blocked = Blocked(models.Reason.INVALID_SPEC, message, deadline=spec, acting=acting)
        return await _blocked(api, body, status, generation, blocked, now, deployments)
    try:
        metrics.check(spec.analysis)  # before anything is taken over: no address, or one the operator forbids
    except endpoints.AccessError as exc:
        return await _blocked(
            api, body, status, generation, _refused(exc.reason, str(exc), spec, applied), now, deployments
        )
    if (why := webhooks.refused(spec)) is not None:
        refused = _refused(models.Reason.WEBHOOK_NOT_ALLOWED, why, spec, applied)
        return await _blocked(api, body, status, generation, refused, now, deployments)

    target_name = spec.target_ref.name
    router = routing.for_rollout(spec, api, body)
    try:
        await router.reconcile(body)  # the user's route as the spec names it: once a tick, not per read
    except routing.RouterError as exc:
        return await _blocked(
            api, body, status, generation, _refused(exc.reason, str(exc), spec, applied), now, deployments
        )
    if applied is not None and _split_by(applied) != _split_by(spec):
        await _route_moved(api, body, applied)
        # The route given back may be the one this router read (another rule of the same HTTPRoute): a new
        # router reads it as it is now, or its writes would be refused (409) and its observed weight stale.
        router = routing.for_rollout(spec, api, body)
    route = routing.route_in_force(spec, status)
    fresh = deployments is None
    while True:
        target_doc, primary_doc, canary_doc = await _deployments(api, namespace, target_name, deployments, fresh)
        target = workloads.target_of(target_doc)
        needs = rollouts.needs(spec, status, target.revision if target else None, now)
        arms = routing.Arms(
            namespace, target_name, workloads.workload_of(primary_doc), workloads.workload_of(canary_doc)
        )
        primary_replicas = autoscaling.primary_replicas(spec, arms.primary, needs.primary_replicas)
        try:
            traffic = await router.observe(arms, needs.weight, primary_replicas, route)
        except routing.RouterError as exc:
            return await _blocked(
                api, body, status, generation, _refused(exc.reason, str(exc), spec, applied), now, deployments
            )
        # Waiting on the cluster (pods becoming ready, a takeover, a promotion): the watch may lag behind
        # the Deployment controller by minutes at scale, so read those Deployments fresh, once.
        if fresh or (traffic.settled and status.phase not in _WAITING_ON_PODS):
            break
        fresh = True
    conflicts = await _conflicts(api, body, spec, status, target_doc, primary_doc, canary_doc)
    if conflicts is None:
        return None  # the target changed while being claimed: the next tick reads it again
    if conflicts:
        message = "; ".join(c.message for c in conflicts)
        decision = rollouts.blocked(status, generation, conflicts[0].reason, message, now)
        await _record_and_post(api, body, decision)
        telemetry.observe_status(namespace, name, spec, decision.status)
        return decision

    provider: providers.MetricProvider | None = None
    if needs.check or needs.budget or needs.continuous:
        try:  # one provider (credentials read now, one time budget) for this tick's check and budget reading
            provider = await metrics.provider(api, namespace, spec.analysis)
        except endpoints.AccessError as exc:
            return await _blocked(
                api, body, status, generation, _refused(exc.reason, str(exc), spec, applied), now, deployments
            )
    check = evidence = None
    if needs.check:
        assert provider is not None
        measurements = await measuring.measure(
            spec,
            namespace,
            traffic.weight,
            now,
            provider,
            needs.check_since,
            step_since=needs.step_since,
            tighten=needs.tighten,
        )
        check = judging.judge(spec.analysis, measurements, slo=spec.slo, tighten=needs.tighten)
    elif needs.continuous and needs.check_since is not None:
        assert provider is not None
        counts = await measuring.measure_since_start(
            spec, namespace, traffic.weight, now, provider, needs.check_since, tighten=needs.tighten
        )
        evidence = judging.continuous(spec.analysis, counts, tighten=needs.tighten)
    budget = judging.Reading()
    if needs.budget:
        assert provider is not None
        budget = await measuring.error_budget(spec, namespace, now, provider)
    answers = await webhooks.ask(api, namespace, name, spec, status, needs.gates, check is not None, now)
    if check is not None:
        check = gating.with_hooks(check, answers)

    autoscaler = await autoscaling.observe(api, body, spec)
    seen = observations.Observations(
        generation=generation,
        target=target,
        primary=arms.primary,
        canary=arms.canary,
        traffic=traffic,
        check=check,
        requests=requests_of(body),
        evidence=evidence,
        budget_remaining=budget.value,
        budget_problem=budget.detail or (budget.problem or ""),
        gates=tuple(a for a in answers if a.type in GATE_TYPES),
        autoscaler_problem=autoscaler.problem if autoscaler is not None else None,
        hpa_replicas=autoscaling.hpa_replicas(spec, arms.primary),
        services_digest=workloads.services_digest(body, spec),
    )
    decision = rollouts.reconcile(spec, status, seen, now)
    logs.bind_release(decision.status)
    if check is not None:
        logs.get().info(
            "check",
            verdict=check.verdict.value,
            reason=check.reason,
            weight=check.weight,
            metrics=[m.model_dump(mode="json", by_alias=True, exclude_none=True) for m in check.metrics],
        )
    recorded = await _record(api, body, _failures_kept(status, decision))
    if recorded is None:
        return None
    _observe(namespace, name, spec, decision, check)
    actions = rollouts.derive(spec, decision.status, seen)
    cleanups = [a for a in actions if isinstance(a, rollouts.ClearRequest)]
    # The header or cookie route of the recorded status, derived like its weight.
    route = routing.route_in_force(spec, decision.status)
    for action in actions:
        if not isinstance(action, rollouts.ClearRequest):
            await _apply(api, recorded, spec, action, target_doc, primary_doc, canary_doc, arms, router, route)
    if arms.primary is not None and autoscaler is not None:
        await autoscaling.ensure_primary_hpa(api, recorded, spec, autoscaler)
    made = seen.services_digest if any(isinstance(a, rollouts.EnsureServices) for a in actions) else None
    await _send_events(api, recorded, decision.status)
    recorded = await _acted(api, recorded, decision, made)
    for action in cleanups:  # last: it changes the resourceVersion the status after acting is written under
        await _apply(api, recorded, spec, action, target_doc, primary_doc, canary_doc, arms, router, route)
    return decision


async def _acted(api: kube.Client, recorded: Body, decision: rollouts.Decision, made: str | None) -> Body:
    """What only acting makes true, in one status patch once all of it is done (a crash before does it again).

    The outbox is emptied (its Events are posted: a repost is refused as existing), the Services are
    recorded as made for ``made`` (a crash before makes them again: idempotent), and the failures in a row
    are over (the decision as the state machine made it, without the count ``_failures_kept`` held back).
    A 409 loses only this: the next tick finds each of the three still to do, and redoes it once.
    """
    update: dict[str, object] = {"pending_events": []}
    if made is not None:
        update["services_digest"] = made
    after = dataclasses.replace(decision, status=decision.status.model_copy(update=update))
    return await _record(api, recorded, after) or recorded


def _failures_kept(status: models.CanaryRolloutStatus, decision: rollouts.Decision) -> rollouts.Decision:
    """The decision as recorded before it is acted on: the failures in a row (and the condition they set) stay.

    The state machine decides as if the tick will go through (no failures); only once its actions are done is
    that written. Otherwise a tick that always fails when it acts (a refused patch) would write the count
    back to 0 before failing again, and never reach ``Stalled``.
    """
    if not status.reconcile_errors:
        return decision
    kept: dict[str, object] = {"reconcile_errors": status.reconcile_errors}
    if status.reconcile_errors >= rollouts.RECONCILE_ERRORS_TO_STALL:
        kept["conditions"] = status.conditions
    return dataclasses.replace(decision, status=decision.status.model_copy(update=kept))


@dataclasses.dataclass(frozen=True)
class Blocked:
    """Why a tick cannot go on, and with which specs a canary under way is bounded and given back.

    ``deadline``: whose progressDeadline and progressDeadlineAbort apply (the current spec when valid).
    ``acting``: the router and target the traffic is given back with: the spec last acted with
    (``status.appliedSpec``), since the current one may be invalid or name a route that does not exist.
    None for either: the rollout is only held (nothing may be written, or nothing says how).
    """

    reason: models.Reason
    message: str
    deadline: models.CanaryRolloutSpec | None = None
    acting: models.CanaryRolloutSpec | None = None


def _refused(
    reason: models.Reason, message: str, spec: models.CanaryRolloutSpec, applied: models.CanaryRolloutSpec | None
) -> Blocked:
    """A valid spec whose Prometheus, route or webhook URL is refused: its own deadline, the router last acted with."""
    return Blocked(reason, message, deadline=spec, acting=applied or spec)


def _applied_spec(status: models.CanaryRolloutStatus) -> models.CanaryRolloutSpec | None:
    """The spec the rollout last acted with; None when none was recorded (an older operator) or it no longer parses."""
    if status.applied_spec is None:
        return None
    try:
        return models.parse_spec(status.applied_spec)
    except pydantic.ValidationError:
        return None


async def _blocked(
    api: kube.Client,
    body: Body,
    status: models.CanaryRolloutStatus,
    generation: int,
    blocked: Blocked,
    now: datetime.datetime,
    deployments: caching.Deployments | None = None,
) -> rollouts.Decision | None:
    """Progress is impossible until someone acts: record why (once), and bound a canary under way.

    Nothing is read or written for an idle rollout. For a canary under way, the acting router observes the
    canary's weight; past the deadline the state machine records a rollback, and the traffic is then given back
    (``rollouts.give_back``, from the recorded status) on this tick and on every later one while the block lasts.
    If the acting router or the arms cannot be used (someone else's, or the route is gone), nothing is given
    back and the canary is only held, as the condition says.

    The Deployments come from the watch cache (``deployments``) like a normal tick's; they are read fresh only
    when the give-back must act on them, which the cache shows as not done yet.
    """
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    acting, deadline = blocked.acting, blocked.deadline
    giving = (
        acting is not None
        and deadline is not None
        and (status.phase in models.EXPOSED_PHASES or (status.blocked is not None and status.blocked.gave_back))
    )
    hands: _Hands | None = None
    if giving:
        assert acting is not None
        hands = await _hands(api, body, acting, rollouts.plan.primary_replicas(status.target_replicas), deployments)
    decision = rollouts.blocked(
        status,
        generation,
        blocked.reason,
        blocked.message,
        now,
        spec=deadline if hands is not None else None,
        weight=hands.weight if hands is not None else None,
    )
    recorded = await _record(api, body, decision)
    if recorded is None:
        # None, as for any 409: nothing of it happened (a rollback decided at the deadline included), and the
        # loop reads the CanaryRollout again within tick_seconds rather than sleep as the decision's phase says.
        return None
    recorded_block = decision.status.blocked
    if hands is not None and acting is not None and recorded_block is not None and recorded_block.gave_back:
        actions = rollouts.give_back(decision.status, _seen_by(hands, acting, generation))
        if _given_back(hands, actions):
            actions = ()  # so already, as observed: nothing to write, and nothing to read fresh
        elif deployments is not None:
            # Acting: on the Deployments as they are, not as the watch last saw them (it may lag by minutes).
            hands = await _fresh(api, body, acting, hands, deployments)
            actions = rollouts.give_back(decision.status, _seen_by(hands, acting, generation)) if hands else ()
        for action in actions:
            assert hands is not None
            await _apply(
                api,
                recorded,
                acting,
                action,
                hands.target_doc,
                hands.primary_doc,
                hands.canary_doc,
                hands.arms,
                hands.router,
            )
    await _post_events(api, recorded, decision.status)
    _observe(namespace, name, deadline, decision, None)
    return decision


@dataclasses.dataclass(frozen=True)
class _Hands:
    """What a blocked rollout gives the traffic back with: the acting router and arms, what the router observed."""

    router: routing.TrafficRouter
    arms: routing.Arms
    weight: int
    settled: bool  # the weight observed is the one asked (0): the canary scaled down, the primary ready
    target_doc: Body | None
    primary_doc: Body | None
    canary_doc: Body | None


async def _hands(
    api: kube.Client,
    body: Body,
    acting: models.CanaryRolloutSpec,
    planned_replicas: int,
    cache: caching.Deployments | None,
) -> _Hands | None:
    """The acting router and arms (from the cache when there is one), if this rollout may still write through
    them; None otherwise."""
    read = await _own_arms(api, body, acting, cache, fresh=False)
    if read is None:
        return None
    arms, target_doc, primary_doc, canary_doc = read
    router = routing.for_rollout(acting, api, body)
    primary_replicas = autoscaling.primary_replicas(acting, arms.primary, planned_replicas)
    try:
        await router.reconcile(body)
        traffic = await router.observe(arms, 0, primary_replicas)
    except routing.RouterError as exc:
        logs.get().warning("blocked canary: its router cannot give the traffic back", error=str(exc))
        return None
    return _Hands(router, arms, traffic.weight, traffic.settled, target_doc, primary_doc, canary_doc)


async def _fresh(
    api: kube.Client, body: Body, acting: models.CanaryRolloutSpec, hands: _Hands, cache: caching.Deployments
) -> _Hands | None:
    """``hands`` with the three Deployments read fresh (GET); None when the arms are no longer this rollout's."""
    read = await _own_arms(api, body, acting, cache, fresh=True)
    if read is None:
        return None
    arms, target_doc, primary_doc, canary_doc = read
    return dataclasses.replace(hands, arms=arms, target_doc=target_doc, primary_doc=primary_doc, canary_doc=canary_doc)


async def _own_arms(
    api: kube.Client, body: Body, acting: models.CanaryRolloutSpec, cache: caching.Deployments | None, fresh: bool
) -> tuple[routing.Arms, Body | None, Body | None, Body | None] | None:
    """The arms and the target, primary and canary Deployments (``fresh``: read by GET), if the arms are this
    rollout's to write (ownership before every write); None otherwise."""
    namespace = body["metadata"]["namespace"]
    target = acting.target_ref.name
    target_doc, primary_doc, canary_doc = await _deployments(api, namespace, target, cache, fresh)
    arms_found = ((names.primary(target), primary_doc), (names.canary(target), canary_doc))
    if ownership.created_conflicts(body, "Deployment", arms_found):
        return None
    arms = routing.Arms(namespace, target, workloads.workload_of(primary_doc), workloads.workload_of(canary_doc))
    return arms, target_doc, primary_doc, canary_doc


def _seen_by(hands: _Hands, acting: models.CanaryRolloutSpec, generation: int) -> observations.Observations:
    """What the give-back is derived from: the target (to rebuild the primary from) and the autoscaled size."""
    return observations.Observations(
        generation=generation,
        target=workloads.target_of(hands.target_doc),
        hpa_replicas=autoscaling.hpa_replicas(acting, hands.arms.primary),
    )


def _given_back(hands: _Hands, actions: tuple[rollouts.Action, ...]) -> bool:
    """Whether what the give-back asks is so already, as ``hands`` shows it: then there is nothing to act on."""
    for action in actions:
        match action:
            case rollouts.SetWeight(weight=weight):
                if hands.weight != weight or not hands.settled:
                    return False
            case rollouts.EnsurePrimary(revision=revision, replicas=replicas):
                primary = hands.arms.primary
                if primary is None or primary.revision != revision:
                    return False
                if replicas is not None and primary.replicas != replicas:
                    return False
            case _:
                return False
    return True


_WAITING_ON_PODS = frozenset({None, models.Phase.INITIALIZING, models.Phase.PROMOTING})


async def _deployments(
    api: kube.Client, namespace: str, target: str, cache: caching.Deployments | None, fresh: bool
) -> tuple[Body | None, Body | None, Body | None]:
    """The target, primary and canary Deployments: from the watch cache, or with GETs when ``fresh``."""
    names_ = (target, names.primary(target), names.canary(target))
    if cache is not None and not fresh:
        found = [cache.get(namespace, name) for name in names_]
        return found[0], found[1], found[2]
    target_doc, primary_doc, canary_doc = await asyncio.gather(
        *(api.get(kube.deployment_path(namespace, name)) for name in names_)
    )
    if cache is not None:
        for doc in (target_doc, primary_doc, canary_doc):
            if doc is not None:
                cache.remember(doc)  # newer than the watch's copy until the watch catches up
    return target_doc, primary_doc, canary_doc


def requests_of(body: Mapping[str, Any]) -> tuple[observations.Request, ...]:
    annotations = body["metadata"].get("annotations") or {}
    return tuple(
        observations.Request(kind, str(annotations[kind.annotation]))
        for kind in models.Request
        if kind.annotation in annotations
    )


async def report_failure(api: kube.Client, namespace: str, name: str, error: str, now: datetime.datetime) -> None:
    """A tick failed: count it in the status; a few in a row become Stalled=True, reason ReconcileError."""
    body = await api.get(kube.rollout_path(namespace, name))
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    status = models.parse_status(body.get("status"))
    generation = int(body["metadata"].get("generation") or 1)
    await _record_and_post(api, body, rollouts.failed(status, generation, error, now))


async def _conflicts(
    api: kube.Client,
    rollout: Mapping[str, Any],
    spec: models.CanaryRolloutSpec,
    status: models.CanaryRolloutStatus,
    target_doc: Mapping[str, Any] | None,
    primary_doc: Mapping[str, Any] | None,
    canary_doc: Mapping[str, Any] | None,
) -> list[ownership.Conflict] | None:
    """Ownership before every write (see ``ownership``): what forbids this tick's writes; else the target claimed.

    None when the claim met a 409 (the target was written since it was read, by its controller or another
    rollout claiming it): nothing is decided this tick.

    Checked before anything is decided, so a conflict stops every write of the tick but the status. The
    Services are read only while taking over, when they are created; afterwards they are found ours.
    """
    namespace, target = rollout["metadata"]["namespace"], spec.target_ref.name
    services: dict[str, Mapping[str, Any] | None] = {}
    if status.phase in (None, models.Phase.INITIALIZING):
        wanted = (names.apex(target), names.primary(target), names.canary(target))
        found = await asyncio.gather(*(api.get(kube.service_path(namespace, n)) for n in wanted))
        services = dict(zip(wanted, found, strict=True))
    conflicts = ownership.conflicts(rollout, target_doc, primary_doc, canary_doc, services)
    if conflicts or target_doc is None:
        return conflicts
    claim = ownership.claim_patch(rollout, target_doc)
    if claim is not None:  # resourceVersion as precondition: of two rollouts claiming at once, one gets a 409
        try:
            await api.patch(kube.deployment_path(namespace, target), claim)
        except kube.ConflictError:
            return None
    return []


def _observe(
    namespace: str,
    name: str,
    spec: models.CanaryRolloutSpec | None,
    decision: rollouts.Decision,
    check: models.CheckRecord | None,
) -> None:
    telemetry.observe_status(namespace, name, spec, decision.status)
    if check is not None:
        telemetry.observe_check(namespace, name, check)
    for release in decision.finished:
        telemetry.observe_release(namespace, name, release)
        logs.get().info("release finished", **release.model_dump(mode="json", exclude_none=True))
    if decision.restored is not None:
        telemetry.observe_restore(namespace, name, decision.restored)
        logs.get().info("traffic restored", **decision.restored.model_dump(mode="json", exclude_none=True))


async def _record(api: kube.Client, body: Body, decision: rollouts.Decision) -> Body | None:
    """Write the decision's status in one patch guarded by the resourceVersion read; skipped when unchanged.

    The CanaryRollout as it now is (to act on); None when it changed since it was read (409): then nothing
    of this decision happens, and the next tick decides again.
    """
    patch = kube.merge_patch(body.get("status") or {}, decision.status.to_wire())
    if not patch:
        return body
    meta = body["metadata"]
    try:
        return await api.patch(
            kube.rollout_path(meta["namespace"], meta["name"]) + "/status",
            {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": patch},
        )
    except kube.ConflictError:
        logs.get().info("status changed since it was read; deciding again next tick")
        return None


async def _record_and_post(api: kube.Client, body: Body, decision: rollouts.Decision) -> None:
    recorded = await _record(api, body, decision)
    if recorded is not None:
        await _post_events(api, recorded, decision.status)


async def _post_events(api: kube.Client, body: Body, status: models.CanaryRolloutStatus) -> Body:
    """Post the outbox's Events (each under its own derived name, so a repost is refused) and empty it."""
    if not status.pending_events:
        return body
    await _send_events(api, body, status)
    meta = body["metadata"]
    try:
        return await api.patch(
            kube.rollout_path(meta["namespace"], meta["name"]) + "/status",
            {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": {"pendingEvents": []}},
        )
    except kube.ConflictError:
        return body  # the next tick finds them again and reposts nothing new


async def _send_events(api: kube.Client, body: Body, status: models.CanaryRolloutStatus) -> None:
    """Post the outbox's Events, each under its own derived name (a repost is refused); the outbox stays."""
    if not status.pending_events:
        return
    namespace = body["metadata"]["namespace"]
    log = logs.get()
    posted = []
    for record in status.pending_events:
        try:
            await api.create(kube.events_path(namespace), _event(body, record))
        except kube.ConflictError:
            continue  # posted before the operator stopped: once is enough
        except kube.ApiError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise  # may pass: the outbox keeps it for the next tick
            # Refused for good (a quota on Events, a policy): telling must never stop the next decision.
            log.warning("event refused; dropped", reason=record.reason, message=record.message, error=str(exc))
            continue
        posted.append(record)
        (log.warning if record.type is models.EventType.WARNING else log.info)(record.reason, message=record.message)
    _notify(api, body, status, posted)


# Notifications are sent in the background: a slow or dead receiver must not delay the next tick (and so a
# rollback). They go out when their Event is first posted, so a repost after a restart sends nothing twice.
_DEDUP = notifications.Deduplicator()
_SENDING: set[asyncio.Task[None]] = set()


ENDINGS = frozenset({models.NotificationEvent.PROMOTED, models.NotificationEvent.ROLLED_BACK})


def _notify(api: kube.Client, body: Body, status: models.CanaryRolloutStatus, posted: list[models.EventRecord]) -> None:
    try:
        spec = models.parse_spec(body.get("spec"))
    except pydantic.ValidationError:
        # A canary given back while its spec is invalid is still told, to whom the spec last acted with says.
        applied = _applied_spec(status)
        if applied is None:
            return
        spec = applied
    notifiers = spec.notifications
    meta = body["metadata"]
    ended = (
        r.reason in notifications.REASONS and notifications.event_of(r.reason, status, r.message) in ENDINGS
        for r in posted
    )
    if any(ended):
        at = datetime.datetime.fromisoformat(posted[-1].at)
        _background(_post_rollout(api, meta["namespace"], meta["name"], spec, status, at), meta)
    found = [
        notice
        for record in posted
        for notice in notifications.notices(
            meta["namespace"],
            meta["name"],
            [(record.reason, record.message)],
            status,
            datetime.datetime.fromisoformat(record.at),
        )
    ]
    if notifiers and found:
        _background(_send(api, notifiers, found), meta)


def _background(work: Coroutine[Any, Any, None], meta: Mapping[str, Any]) -> None:
    task = asyncio.create_task(work, name=f"hooks of {meta['namespace']}/{meta['name']}")
    _SENDING.add(task)
    task.add_done_callback(_SENDING.discard)


async def _post_rollout(
    api: kube.Client,
    namespace: str,
    name: str,
    spec: models.CanaryRolloutSpec,
    status: models.CanaryRolloutStatus,
    now: datetime.datetime,
) -> None:
    try:
        for answer in await webhooks.after(api, namespace, name, spec, status, now):
            logs.get().info("post-rollout webhook", hook=answer.name, ok=answer.open, answer=answer.message)
    except Exception:  # a hook must never take the operator down
        logs.get().exception("post-rollout webhook crashed")


async def _send(api: kube.Client, notifiers: list[models.Notification], found: list[notifications.Notice]) -> None:
    log = logs.get()
    async with aiohttp.ClientSession() as session:
        for notice in found:
            for notifier in notifiers:
                try:
                    answer = await notifications.send(session, api, notifier, notice, _DEDUP)
                except Exception:  # a notification must never take the operator down
                    log.exception("notification crashed", notifier=notifier.name, event=notice.event.value)
                    continue
                if answer is not None and not answer.ok:
                    log.warning(
                        "notification not delivered",
                        notifier=notifier.name,
                        event=notice.event.value,
                        attempts=answer.attempts,
                        error=answer.message,
                    )


async def notifications_sent() -> None:
    """Wait for the notifications in flight (tests, and a clean shutdown)."""
    while _SENDING:
        await asyncio.gather(*_SENDING, return_exceptions=True)


def _event(rollout: Mapping[str, Any], record: models.EventRecord) -> Body:
    meta = rollout["metadata"]
    at = datetime.datetime.fromisoformat(record.at).astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": names.event(meta["name"], meta.get("uid", ""), record.seq),
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        },
        "type": record.type.value,
        "reason": record.reason.value,
        "message": record.message[:1024],
        "source": {"component": "canary-operator"},
        "reportingComponent": "canary-operator",
        "reportingInstance": "canary-operator",
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }


def _template_patch(template: Mapping[str, Any], revision: str, replicas: int | None) -> list[dict[str, Any]]:
    # A JSON patch replaces the pod template whole: a merge patch could not remove a container or an env var.
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {
            "op": "add",
            "path": "/metadata/annotations/" + workloads.REVISION_ANNOTATION.replace("/", "~1"),
            "value": revision,
        },
    ]
    if replicas is not None:
        ops.append({"op": "replace", "path": "/spec/replicas", "value": replicas})
    return ops


async def _ensure_arm(
    api: kube.Client,
    rollout: Mapping[str, Any],
    target_doc: Mapping[str, Any] | None,
    existing: Mapping[str, Any] | None,
    arm: str,
    template: Mapping[str, Any],
    revision: str,
    replicas: int | None,
) -> None:
    assert target_doc is not None  # actions are derived only when the target exists
    namespace = rollout["metadata"]["namespace"]
    desired = workloads.arm_deployment(rollout, target_doc, arm, template, revision, replicas or 0)
    if existing is None:
        await api.create(kube.deployment_path(namespace), desired)
        return
    current = workloads.workload_of(existing)
    assert current is not None
    if current.revision == revision and (replicas is None or current.replicas == replicas):
        return
    if current.revision == revision:
        await api.patch(kube.deployment_path(namespace, desired["metadata"]["name"]), {"spec": {"replicas": replicas}})
        return
    await api.patch(
        kube.deployment_path(namespace, desired["metadata"]["name"]),
        _template_patch(desired["spec"]["template"], revision, replicas),
        kube.JSON_PATCH,
    )


async def _ensure_services(api: kube.Client, rollout: Mapping[str, Any], spec: models.CanaryRolloutSpec) -> None:
    namespace = rollout["metadata"]["namespace"]
    for desired in workloads.services(rollout, spec):
        name = desired["metadata"]["name"]
        existing = await api.get(kube.service_path(namespace, name))
        if existing is None:
            await api.create(kube.service_path(namespace), desired)
        elif ownership.adoptable(existing, spec.target_ref.name):
            # Handed over by a CanaryRollout deleted before this one: taken back.
            await api.patch(kube.service_path(namespace, name), ownership.adoption_patch(existing, desired))
        elif ownership.owned_by(existing, rollout) and (
            existing["spec"].get("selector") != desired["spec"]["selector"]
            or existing["spec"].get("ports") != desired["spec"]["ports"]
        ):
            await api.patch(
                kube.service_path(namespace, name),
                {"spec": {"selector": desired["spec"]["selector"], "ports": desired["spec"]["ports"]}},
            )


async def _apply(
    api: kube.Client,
    rollout: Mapping[str, Any],
    spec: models.CanaryRolloutSpec,
    action: rollouts.Action,
    target_doc: Mapping[str, Any] | None,
    primary_doc: Mapping[str, Any] | None,
    canary_doc: Mapping[str, Any] | None,
    arms: routing.Arms,
    router: routing.TrafficRouter,
    route: models.RouteMatch | None = None,
) -> None:
    namespace = rollout["metadata"]["namespace"]
    match action:
        case rollouts.EnsurePrimary(template=template, revision=revision, replicas=replicas):
            await _ensure_arm(api, rollout, target_doc, primary_doc, "primary", template, revision, replicas)
        case rollouts.EnsureCanary(template=template, revision=revision):
            await _ensure_arm(api, rollout, target_doc, canary_doc, "canary", template, revision, None)
        case rollouts.EnsureServices():
            await _ensure_services(api, rollout, spec)
        case rollouts.SetWeight(weight=weight, primary_replicas=primary_replicas):
            await router.set_weight(arms, weight, primary_replicas, route)
        case rollouts.ScaleTarget(replicas=replicas):
            current = workloads.target_of(target_doc)
            if current is not None and current.replicas != replicas:
                await api.patch(kube.deployment_path(namespace, spec.target_ref.name), {"spec": {"replicas": replicas}})
        case rollouts.ClearRequest(annotation=annotation, value=value):
            # Removed only if it still holds the acknowledged value: a newer request is never lost.
            key = "/metadata/annotations/" + annotation.replace("~", "~0").replace("/", "~1")
            try:
                await api.patch(
                    kube.rollout_path(namespace, rollout["metadata"]["name"]),
                    [{"op": "test", "path": key, "value": value}, {"op": "remove", "path": key}],
                    kube.JSON_PATCH,
                )
            except kube.ApiError as exc:
                if exc.code not in (409, 422):
                    raise


async def finalize(api: kube.Client, body: Mapping[str, Any]) -> None:
    """Give the user's Deployment back as it was, then remove everything the operator created but the apex Service.

    The target is scaled back first and must be ready before the primary goes, so that deleting a
    CanaryRollout never leaves the service without pods. ``NotYet`` while waiting for it. The apex Service
    (named after the target, the name routes and clients use) is handed to the user, selecting the target's pods.
    """
    namespace = body["metadata"]["namespace"]
    status = models.parse_status(body.get("status"))
    logs.bind_rollout(namespace, body["metadata"]["name"], status)
    target = status.target or ((body.get("spec") or {}).get("targetRef") or {}).get("name")
    if not isinstance(target, str) or not re.fullmatch(models.DNS_LABEL_PATTERN, target):
        return  # such a target was never taken over: the schema or the model refused it first
    target_doc = await api.get(kube.deployment_path(namespace, target))
    restore = status.target_replicas
    if not ownership.may_restore(body, target_doc):
        restore = None  # another rollout's (or nobody's) to give back: not this one's to scale
    if target_doc is not None and restore is not None:
        if (target_doc["spec"].get("replicas") or 0) != restore:
            await api.patch(kube.deployment_path(namespace, target), {"spec": {"replicas": restore}})
            raise NotYet(f"restored {target} to {restore} replicas; waiting for it")
        workload = workloads.workload_of(target_doc)
        if restore > 0 and workload is not None and not workload.rolled_out:
            raise NotYet(f"waiting for {target} to be ready before removing the primary")
    apex = kube.service_path(namespace, names.apex(target))
    if (handover := ownership.handover_patch(body, await api.get(apex), target_doc)) is not None:
        await api.patch(apex, handover)  # before the route is given back: the route names it
    await _finalize_router(api, body)
    removed = []
    for path in (
        kube.deployment_path(namespace, names.canary(target)),
        kube.deployment_path(namespace, names.primary(target)),
        kube.service_path(namespace, names.canary(target)),
        kube.service_path(namespace, names.primary(target)),
        apex,  # when it could not be handed over (no target, or a selector a Service cannot hold)
    ):
        if ownership.owned_by(await api.get(path), body) and await api.delete(path):
            removed.append(path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1])
    if target_doc is not None and (release := ownership.release_patch(body, target_doc)) is not None:
        await api.patch(kube.deployment_path(namespace, target), release)
    logs.get().info("finalized", restored_replicas=restore, removed=removed, handed_over=handover is not None)


def _split_by(spec: models.CanaryRolloutSpec) -> dict[str, Any]:
    """The router and the route objects a spec splits with; ``metrics`` (where the templates read) is not one."""
    return spec.traffic_routing.model_dump(mode="json", by_alias=True, exclude={"metrics"})


async def _route_moved(api: kube.Client, body: Body, applied: models.CanaryRolloutSpec) -> None:
    """Git moved the split to another route or router, and the new one can be used: the route last acted with is
    given back as the user wrote it, or it would keep sending the canary its share (to no pods, once the canary is
    scaled down). Before this tick records the new spec as the one acted with, so that a crash in between leaves
    it to the next tick; a route already given back is not touched again (each router gives back what it marks)."""
    await routing.for_rollout(applied, api, body).finalize(body)
    moved_from = applied.model_dump(mode="json", by_alias=True, exclude_none=True).get("trafficRouting")
    logs.get().info("route moved: the route last acted with is given back", routing=moved_from)


async def _finalize_router(api: kube.Client, body: Mapping[str, Any]) -> None:
    """Give back the user's route as it was, while the Services it named still exist.

    The routes of the current spec and of the spec last acted with (``status.appliedSpec``): Git may have made
    the spec invalid, or named another route, after the operator changed the first one. Left as it is, that
    route would send its traffic to the Services removed next. Each router gives back only what it marked ours.
    """
    specs: list[models.CanaryRolloutSpec] = []
    try:
        specs.append(models.parse_spec(body.get("spec")))
    except pydantic.ValidationError:
        pass  # a spec that never validated never routed; one edited into invalidity routed as the applied one
    applied = _applied_spec(models.parse_status(body.get("status")))
    routed = [(spec.traffic_routing, spec.target_ref.name) for spec in specs]
    if applied is not None and (applied.traffic_routing, applied.target_ref.name) not in routed:
        specs.append(applied)
    if not specs:
        logs.get().warning("finalize: invalid spec and none acted with, the traffic router is not finalized")
    for spec in specs:
        await routing.for_rollout(spec, api, body).finalize(body)
