"""Kopf registrations, and nothing else: every handler calls into a domain module.

One daemon per CanaryRollout runs the reconcile loop (``reconciling.tick``)
every ``CANARY_TICK_SECONDS`` while a canary is under way, every
``CANARY_IDLE_TICK_SECONDS`` otherwise; the delete handler (behind the operator's own
finalizer) gives the user's Deployment back. Kopf's bookkeeping lives under
the ``canary.dev`` API group.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

import kopf

from canary_operator import kube, logs, models, reconciling, rollouts, telemetry


def _tick_seconds(decision: rollouts.Decision | None) -> float:
    """Fast while a canary is under way (rollback latency), slower while idle (API load at scale)."""
    busy = float(os.environ.get("CANARY_TICK_SECONDS", "1"))
    idle = float(os.environ.get("CANARY_IDLE_TICK_SECONDS", "5"))
    if decision is not None and decision.status.phase in models.IDLE_PHASES:
        return max(busy, idle)
    return busy


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    logs.configure()
    settings.persistence.finalizer = f"{models.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=models.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=models.GROUP, key="last-handled-configuration"
    )
    settings.posting.reporting_component = "canary-operator"  # the "From" column of kubectl describe
    settings.posting.level = logging.WARNING  # our own Events carry the story; Kopf's handler chatter does not
    settings.watching.server_timeout = 300
    settings.background.cancellation_polling = 0.2


@kopf.on.startup()
async def serve_http(memo: kopf.Memo, **_: Any) -> None:
    """/metrics, /healthz and /readyz (see telemetry); CANARY_HTTP_PORT=0 turns them off."""
    if os.environ.get("CANARY_HTTP_PORT") != "0":
        memo.http = await telemetry.serve(_api_answers)


@kopf.on.cleanup()
async def stop_http(memo: kopf.Memo, **_: Any) -> None:
    runner = getattr(memo, "http", None)
    if runner is not None:
        await runner.cleanup()


async def _api_answers() -> bool:
    async with kube.Client() as api:
        return await api.get(f"/apis/{models.GROUP}/{models.VERSION}") is not None


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is not None:
        kube.use_credentials(info)
    return info


@kopf.daemon(models.GROUP, models.VERSION, models.PLURAL, cancellation_timeout=5.0)
async def run_rollout(name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any) -> None:
    assert namespace is not None  # the resource is namespaced
    log = logs.get()
    async with kube.Client() as api:
        while not stopped:
            decision = None
            with telemetry.reconcile_duration.time():
                try:
                    decision = await reconciling.tick(api, namespace, name, datetime.datetime.now(datetime.UTC))
                    telemetry.reconciles.labels("ok").inc()
                except (kube.ApiError, kube.UnreachableError) as exc:
                    await _failed(api, namespace, name, str(exc))
                    log.warning("tick failed; retrying next tick", error=str(exc))
                except Exception as exc:  # never let one rollout's bug stop its loop or the operator
                    await _failed(api, namespace, name, f"{type(exc).__name__}: {exc}")
                    log.exception("tick crashed; retrying next tick")
            await stopped.wait(_tick_seconds(decision))


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
