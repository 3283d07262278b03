"""The operator watched: its own metrics, delivery figures, and liveness/readiness probes.

Served over HTTP on the port of the settings' ``http_port`` (default 8080):
- ``/metrics``: Prometheus text exposition of everything below;
- ``/healthz``: liveness; answers as long as the event loop runs (nothing about dependencies,
  so a down API server never gets the operator restarted in a loop);
- ``/readyz``: readiness; the operator has logged in and the API server answers.

Label sets are bounded: namespace, rollout, metric name (from the spec), phase, verdict, outcome.
No revision hashes, release ids or query strings become labels; those go to logs and Events.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable

import prometheus_client
from aiohttp import web

from canary_operator import models

REGISTRY = prometheus_client.CollectorRegistry()
prometheus_client.ProcessCollector(registry=REGISTRY)
prometheus_client.PlatformCollector(registry=REGISTRY)

_PREFIX = "canary_operator"
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_RELEASE_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400)

reconciles = prometheus_client.Counter(
    f"{_PREFIX}_reconciles", "Reconcile ticks, by result (ok, error).", ["result"], registry=REGISTRY
)
reconcile_duration = prometheus_client.Histogram(
    f"{_PREFIX}_reconcile_duration_seconds",
    "Time spent in one reconcile tick.",
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)
tick_waits = prometheus_client.Histogram(
    f"{_PREFIX}_tick_wait_seconds",
    "How long a rollout's loop sleeps after a tick (a change wakes it sooner), by what it waits for: check,"
    " continuous, pause, deadline, gate (the clock), resync (nothing due), unsure, overdue, retry or unwatched"
    " (the busy tick).",
    ["until"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
rollout_phase = prometheus_client.Gauge(
    f"{_PREFIX}_rollout_phase",
    "1 for the phase a CanaryRollout is in, 0 for the others.",
    ["namespace", "rollout", "phase"],
    registry=REGISTRY,
)
rollout_weight = prometheus_client.Gauge(
    f"{_PREFIX}_rollout_weight_percent",
    "Share of traffic the canary actually gets.",
    ["namespace", "rollout"],
    registry=REGISTRY,
)
rollout_inconclusive = prometheus_client.Gauge(
    f"{_PREFIX}_rollout_inconclusive_checks",
    "Consecutive inconclusive checks of the current canary.",
    ["namespace", "rollout"],
    registry=REGISTRY,
)
rollout_started = prometheus_client.Gauge(
    f"{_PREFIX}_rollout_canary_started_timestamp_seconds",
    "When the current canary started (0 when none is under way).",
    ["namespace", "rollout"],
    registry=REGISTRY,
)
rollout_planned = prometheus_client.Gauge(
    f"{_PREFIX}_rollout_planned_duration_seconds",
    "How long the steps of the plan take at least (pauses plus one check per step).",
    ["namespace", "rollout"],
    registry=REGISTRY,
)
rollout_stalled = prometheus_client.Gauge(
    f"{_PREFIX}_rollout_stalled",
    "1 while a CanaryRollout cannot make progress (condition Stalled=True), labelled with the condition's reason.",
    ["namespace", "rollout", "reason"],
    registry=REGISTRY,
)
checks = prometheus_client.Counter(
    f"{_PREFIX}_checks",
    "Metric checks, by metric and verdict.",
    ["namespace", "rollout", "metric", "verdict"],
    registry=REGISTRY,
)
query_duration = prometheus_client.Histogram(
    f"{_PREFIX}_provider_query_duration_seconds",
    "Time to answer one metric provider query.",
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)
query_errors = prometheus_client.Counter(
    f"{_PREFIX}_provider_query_errors",
    "Metric provider queries that failed, by reason.",
    ["reason"],
    registry=REGISTRY,
)
provider_reachable = prometheus_client.Gauge(
    f"{_PREFIX}_provider_reachable",
    "1 if the rollout's last check reached its metric provider, else 0.",
    ["namespace", "rollout"],
    registry=REGISTRY,
)
releases = prometheus_client.Counter(
    f"{_PREFIX}_releases",
    "Finished releases by outcome (promoted, rolled_back, aborted, superseded, abandoned).",
    ["namespace", "rollout", "outcome"],
    registry=REGISTRY,
)
lead_time = prometheus_client.Histogram(
    f"{_PREFIX}_lead_time_seconds",
    "From a revision seen to it promoted.",
    ["namespace", "rollout"],
    buckets=_RELEASE_BUCKETS,
    registry=REGISTRY,
)
time_to_detect = prometheus_client.Histogram(
    f"{_PREFIX}_time_to_detect_seconds",
    "From a canary's start to its rollback verdict.",
    ["namespace", "rollout"],
    buckets=_RELEASE_BUCKETS,
    registry=REGISTRY,
)
time_to_restore = prometheus_client.Histogram(
    f"{_PREFIX}_time_to_restore_seconds",
    "From the first failing check of a rolled-back canary to traffic back at 100% primary.",
    ["namespace", "rollout"],
    buckets=_RELEASE_BUCKETS,
    registry=REGISTRY,
)


for _result in ("ok", "error"):
    reconciles.labels(_result)
for _reason in ("unreachable", "rejected", "bad_response"):
    query_errors.labels(_reason)


def observe_status(
    namespace: str, name: str, spec: models.CanaryRolloutSpec | None, status: models.CanaryRolloutStatus
) -> None:
    for phase in models.Phase:
        rollout_phase.labels(namespace, name, phase.value).set(1 if status.phase is phase else 0)
    rollout_weight.labels(namespace, name).set(status.weight)
    rollout_inconclusive.labels(namespace, name).set(status.inconclusive_checks)
    running = status.phase in models.EXPOSED_PHASES
    started = status.canary_started_at if running else None
    rollout_started.labels(namespace, name).set(datetime.datetime.fromisoformat(started).timestamp() if started else 0)
    if spec is not None:
        rollout_planned.labels(namespace, name).set(planned_seconds(spec))
    stalled = next((c.reason for c in status.conditions if c.type == "Stalled" and c.status == "True"), None)
    for reason in _stalled_reasons.pop((namespace, name), set()) - {stalled}:
        rollout_stalled.remove(namespace, name, reason)
    if stalled is not None:
        rollout_stalled.labels(namespace, name, stalled).set(1)
        _stalled_reasons[(namespace, name)] = {stalled}
    _create_series(namespace, name)


# The reasons whose stalled series exist, per rollout, so that a cleared reason's series goes away.
_stalled_reasons: dict[tuple[str, str], set[str]] = {}


def _create_series(namespace: str, name: str) -> None:
    """Counters and histograms exist at 0 before their first event, so increase() sees that event."""
    for outcome in models.Outcome:
        releases.labels(namespace, name, outcome.value)
    for histogram in (lead_time, time_to_detect, time_to_restore):
        histogram.labels(namespace, name)


def observe_check(namespace: str, name: str, record: models.CheckRecord) -> None:
    for result in record.metrics:
        checks.labels(namespace, name, result.name, result.verdict.value).inc()
    unreachable = record.cause == models.Reason.PROMETHEUS_UNREACHABLE
    provider_reachable.labels(namespace, name).set(0 if unreachable else 1)


def observe_release(namespace: str, name: str, release: models.ReleaseRecord) -> None:
    releases.labels(namespace, name, release.outcome.value).inc()
    if release.outcome is models.Outcome.PROMOTED and release.duration_seconds is not None:
        lead_time.labels(namespace, name).observe(release.duration_seconds)
    if release.time_to_detect_seconds is not None:
        time_to_detect.labels(namespace, name).observe(release.time_to_detect_seconds)


def observe_restore(namespace: str, name: str, release: models.ReleaseRecord) -> None:
    if release.time_to_restore_seconds is not None:
        time_to_restore.labels(namespace, name).observe(release.time_to_restore_seconds)


def forget(namespace: str, name: str) -> None:
    """Drop a deleted rollout's series, so dashboards do not show ghosts."""
    for family in (rollout_weight, rollout_inconclusive, rollout_started, rollout_planned, provider_reachable):
        try:
            family.remove(namespace, name)
        except KeyError:
            pass
    for phase in models.Phase:
        try:
            rollout_phase.remove(namespace, name, phase.value)
        except KeyError:
            pass
    for reason in _stalled_reasons.pop((namespace, name), set()):
        rollout_stalled.remove(namespace, name, reason)


def planned_seconds(spec: models.CanaryRolloutSpec) -> float:
    interval = spec.analysis.interval_seconds
    total = 0.0
    for step in spec.steps:
        if step.pause is not None and step.pause.seconds is not None:
            total += max(step.pause.seconds, interval)
        else:
            total += interval
    return total


ReadyCheck = Callable[[], Awaitable[bool]]


async def serve(ready: ReadyCheck, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Start the HTTP endpoints in the running event loop; the caller keeps the runner to stop it."""

    async def metrics(_: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        try:
            ok = await asyncio.wait_for(ready(), timeout=5)
        except Exception:  # a hung or failing API check means not ready, never a crash
            ok = False
        return web.Response(text="ready\n" if ok else "not ready\n", status=200 if ok else 503)

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host=host, port=port).start()
    return runner
