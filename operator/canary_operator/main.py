"""Kopf registrations, and nothing else: every handler calls into a domain module.

One daemon per CanaryRollout runs the reconcile loop (``reconciling.tick``) on the body Kopf's
watch holds and on the Deployments of one shared watch (an index, ``caching``). It runs again
when a Deployment it depends on or the CanaryRollout itself changes (or is deleted), within
``tick_seconds`` after the operator wrote an object no watch reports (a route, a Service, an HPA),
and otherwise when the clock next brings it something to do (a check, the end of a pause, a deadline:
``rollouts.schedule``), at most ``idle_tick_seconds`` apart (a resync) and every ``tick_seconds``
when that time cannot be told while a canary is under way (``config.Settings``, kept in Kopf's
memo with the metric source that all rollouts share). The delete handler (behind the operator's
own finalizer) gives the user's Deployment back. Kopf's bookkeeping lives under the
``canary.dev`` API group.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Collection, Mapping
from typing import Any

import kopf

from canary_operator import caching, config, endpoints, kube, logs, models, reconciling, rollouts, telemetry, webhooks

# The Deployments as the watch sees them, shared by every rollout's loop (one per operator process).
_deployments = caching.Deployments()


# Objects whose changes a watch reports; after writing any other one, the loop ticks again within tick_seconds.
_WATCHED_KINDS = frozenset({models.KIND, "Deployment", "Event"})


def _wait(
    decision: rollouts.Decision | None, decided_at: datetime.datetime, settings: config.Settings
) -> rollouts.Wait:
    """Until the next due time of the decision (``rollouts.schedule``); the busy tick when it cannot tell."""
    due = None
    if decision is not None:
        due = decision.due if decision.due is not None else rollouts.nothing_due(decision.status)
    now = datetime.datetime.now(datetime.UTC)
    return rollouts.wait(due, decided_at, now, settings.tick_seconds, settings.idle_tick_seconds)


def _settings(memo: kopf.Memo) -> config.Settings:
    """The operator's settings: given by ``__main__`` (read once at startup), or read here when run otherwise."""
    if getattr(memo, "settings", None) is None:
        try:
            memo.settings = config.from_environ()
        except config.ConfigError as exc:
            raise kopf.PermanentError(str(exc)) from exc
    settings: config.Settings = memo.settings
    return settings


class _QuietWakeUps(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(("Handler 'rollout_changed' succeeded", "Handler 'deployment_deleted' succeeded"))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    ours = _settings(memo)
    logs.configure(ours.log_format)
    memo.metrics = endpoints.Source(ours.prometheus)
    webhooks.configure(webhooks.Policy(ours.webhook_allowed_urls))
    settings.persistence.finalizer = f"{models.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=models.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=models.GROUP, key="last-handled-configuration"
    )
    settings.posting.reporting_component = "canary-operator"  # the "From" column of kubectl describe
    settings.posting.level = logging.WARNING  # our own Events carry the story; Kopf's handler chatter does not
    settings.watching.server_timeout = 300
    # Kopf logs every event handler's success; rollout_changed runs on every write of every rollout.
    logging.getLogger("kopf.objects").addFilter(_QuietWakeUps())
    settings.background.cancellation_polling = 0.2


@kopf.on.startup()
async def serve_http(memo: kopf.Memo, **_: Any) -> None:
    """/metrics, /healthz and /readyz (see telemetry); CANARY_HTTP_PORT=0 turns them off."""
    settings = _settings(memo)
    if settings.http_port != 0:
        memo.http = await telemetry.serve(_api_answers, settings.http_port, settings.http_host)


@kopf.on.cleanup()
async def stop_http(memo: kopf.Memo, **_: Any) -> None:
    runner = getattr(memo, "http", None)
    if runner is not None:
        await runner.cleanup()
    metrics = getattr(memo, "metrics", None)
    if metrics is not None:
        await metrics.close()


async def _api_answers() -> bool:
    async with kube.Client() as api:
        return await api.get(f"/apis/{models.GROUP}/{models.VERSION}") is not None


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    def again() -> kopf.ConnectionInfo | None:  # re-reads the token file or kubeconfig (token rotation)
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    info = again()
    if info is not None:
        kube.use_credentials(info, again)
    return info


@kopf.index("apps", "v1", "deployments")
async def deployments(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[caching.Key, caching.Body]:
    """Every Deployment, trimmed; Kopf lists them all before any daemon starts, and drops deleted ones."""
    # Woken after Kopf has stored what this returns: the woken tick reads the new version.
    asyncio.get_running_loop().call_soon(_deployments.changed, dict(body))
    return {(namespace or "", name): caching.trim(body)}


def _deleted(type: str, **_: Any) -> bool:
    return type == "DELETED"


@kopf.on.event("apps", "v1", "deployments", when=_deleted)
async def deployment_deleted(body: kopf.Body, **_: Any) -> None:
    """Kopf drops a deleted Deployment from the index without calling it: its rollouts look at once all the same,
    and an answer to our own write of it that the watch had not delivered yet is dropped too (``caching``)."""
    asyncio.get_running_loop().call_soon(_deployments.deleted, dict(body))


@kopf.on.event(models.GROUP, models.VERSION, models.PLURAL)
async def rollout_changed(name: str, namespace: str | None, body: kopf.Body, **_: Any) -> None:
    """A spec edit, a request annotation, a deletion: the rollout's loop looks at once. A status write (its own,
    which it decided) does not wake it: what the new status makes due, its schedule says."""
    asyncio.get_running_loop().call_soon(_deployments.rollout_changed, namespace or "", name, dict(body))


@kopf.daemon(models.GROUP, models.VERSION, models.PLURAL, cancellation_timeout=5.0)
async def run_rollout(
    name: str,
    namespace: str | None,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    assert namespace is not None  # the resource is namespaced
    log = logs.get()
    settings = _settings(memo)
    index: Mapping[caching.Key, Collection[caching.Body]] = kwargs["deployments"]  # Kopf passes indices by name
    _deployments.use(index)
    unwatched: list[bool] = []  # this tick wrote an object no watch reports
    # After a tick that decided nothing (409: the watched body was behind, e.g. Kopf's own finalizer
    # patch not yet delivered), the next one reads the CanaryRollout with a GET rather than wait.
    watched = True

    def remember(obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == models.KIND and (meta.get("namespace"), meta.get("name")) == (namespace, name):
            _deployments.wrote_rollout(namespace, name, obj)
        else:
            _deployments.remember(obj)
        if obj.get("kind") not in _WATCHED_KINDS:
            # A route set to a new weight, a Service or an HPA created: no watch tells this loop, which
            # observes the result at its next tick; that tick comes within tick_seconds, not at the next due
            # time (and no sooner: a route someone keeps reverting costs one write per tick_seconds, as before).
            unwatched[:] = [True]

    try:
        async with kube.Client(on_write=remember) as api:
            while not stopped:
                target = str(((body.get("spec") or {}).get("targetRef") or {}).get("name", ""))
                waker = _deployments.waker(namespace, name, target)
                _deployments.deciding(namespace, name, body)
                rollout = _deployments.rollout(namespace, name, dict(body)) if watched else None
                decision = None
                unwatched.clear()
                now = datetime.datetime.now(datetime.UTC)
                with telemetry.reconcile_duration.time():
                    try:
                        decision = await reconciling.tick(
                            api, namespace, name, now, memo.metrics, rollout=rollout, deployments=_deployments
                        )
                        telemetry.reconciles.labels("ok").inc()
                        watched = decision is not None
                    except (kube.ApiError, kube.UnreachableError) as exc:
                        watched = False
                        await _failed(api, namespace, name, str(exc))
                        log.warning("tick failed; retrying next tick", error=str(exc))
                    except Exception as exc:  # never let one rollout's bug stop its loop or the operator
                        await _failed(api, namespace, name, f"{type(exc).__name__}: {exc}")
                        log.exception("tick crashed; retrying next tick")
                wait = _wait(decision, now, settings)
                if unwatched and wait.seconds > settings.tick_seconds:
                    wait = rollouts.Wait(settings.tick_seconds, "unwatched")
                telemetry.tick_waits.labels(wait.until).observe(wait.seconds)
                await _sleep(waker, stopped, wait.seconds)
    finally:
        _deployments.release(namespace, name)


async def _sleep(waker: caching.Waker, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Until woken by a change, stopped, or ``seconds`` passed."""
    woken = asyncio.ensure_future(waker.sleep(seconds))
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({woken, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (woken, stopping):
            task.cancel()


async def _failed(api: kube.Client, namespace: str, name: str, error: str) -> None:
    """Count the failure in the status (Stalled after a few in a row); a failure to say so is only logged."""
    telemetry.reconciles.labels("error").inc()
    try:
        await reconciling.report_failure(api, namespace, name, error[:300], datetime.datetime.now(datetime.UTC))
    except (kube.ApiError, kube.UnreachableError) as exc:
        logs.get().warning("could not record the failure in the status", error=str(exc))


@kopf.on.delete(models.GROUP, models.VERSION, models.PLURAL)
async def delete_rollout(body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
    async with kube.Client() as api:
        try:
            await reconciling.finalize(api, dict(body))
        except reconciling.NotYet as exc:
            raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
        except kube.UnreachableError as exc:
            raise kopf.TemporaryError(str(exc), delay=2) from exc
        except kube.ApiError as exc:
            # A refusal that may pass (conflict, server error, throttling): retry soon, not in Kopf's minute.
            if exc.code in (409, 429) or exc.code >= 500:
                raise kopf.TemporaryError(str(exc), delay=2) from exc
            raise
    telemetry.forget(namespace or "", name)
