"""Taking the measurements of one check, and reading the error budget before a canary starts.

All queries of a check share one evaluation time and one window, and run
concurrently. A provider error becomes a ``Reading`` that says why the number
is missing; the judge decides what that means (never a pass).

Besides each metric's value per arm, a check reads each arm's request count
(the sample size), the bad-request counts a ``compare: primary`` metric tests,
the latency buckets behind a p99 (so that a p99 is reported with what it rests
on), and, with an SLO, the canary's error ratio over the burn-rate windows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from canary_operator import judging, models, providers, queries, significance, telemetry

T = TypeVar("T")


async def _guard(call: Callable[[], Awaitable[T]]) -> T | judging.Reading:
    began = time.perf_counter()
    try:
        return await call()
    except providers.UnreachableError as exc:
        telemetry.query_errors.labels("unreachable").inc()
        return judging.Reading.missing(judging.UNREACHABLE, str(exc))
    except providers.QueryError as exc:
        telemetry.query_errors.labels("rejected").inc()
        return judging.Reading.missing(judging.QUERY_REJECTED, str(exc))
    except providers.NoDataError as exc:
        return judging.Reading.missing(judging.NO_DATA, str(exc))
    finally:
        telemetry.query_duration.observe(time.perf_counter() - began)


async def _read(provider: providers.MetricProvider, promql: str, at: datetime.datetime) -> judging.Reading:
    result = await _guard(lambda: provider.query(promql, at))
    return result if isinstance(result, judging.Reading) else judging.Reading(result)


async def _buckets(
    provider: providers.MetricProvider, promql: str, at: datetime.datetime
) -> dict[float, float] | judging.Reading:
    result = await _guard(lambda: provider.query_by(promql, at, "le"))
    if isinstance(result, judging.Reading):
        return result
    return {float(le): count for le, count in result.items()}


def _tail_note(role: str, buckets: dict[float, float] | judging.Reading) -> str:
    """What a p99 rests on: its bucket, the requests in the window and how many were in the tail."""
    if isinstance(buckets, judging.Reading):
        return ""
    found = significance.quantile_from_buckets(buckets, 0.99)
    total = buckets.get(math.inf, 0.0)
    if found is None or total <= 0:
        return ""
    _, low, high = found
    slower = total - buckets.get(low, 0.0) if low > 0 else total
    upper = "+Inf" if math.isinf(high) else f"{high * 1000:g}ms"
    return f"{role} p99 in bucket {low * 1000:g}ms-{upper}: {slower:.0f} of {total:.0f} requests there or slower"


@dataclasses.dataclass(frozen=True)
class _MetricPlan:
    metric: models.Metric
    canary_query: str
    primary_query: str


async def measure(
    spec: models.CanaryRolloutSpec,
    namespace: str,
    weight: int,
    at: datetime.datetime,
    provider: providers.MetricProvider,
) -> judging.Measurements:
    analysis = spec.analysis
    canary, primary = queries.arms(namespace, spec.target_ref.name)
    window = analysis.interval

    async def for_metric(metric: models.Metric) -> judging.MetricReadings:
        w = queries.window(metric, analysis)
        canary_query = queries.render(metric, analysis, canary)
        values = asyncio.gather(
            _read(provider, canary_query, at), _read(provider, queries.render(metric, analysis, primary), at)
        )
        canary_bad: judging.Reading | None = None
        primary_bad: judging.Reading | None = None
        note = ""
        if metric.template is models.MetricTemplate.LATENCY_P99:
            canary_buckets, primary_buckets = await asyncio.gather(
                _buckets(provider, queries.latency_buckets(canary, w), at),
                _buckets(provider, queries.latency_buckets(primary, w), at),
            )
            note = "; ".join(
                n for n in (_tail_note("canary", canary_buckets), _tail_note("primary", primary_buckets)) if n
            )
            if metric.compare is not None:
                assert metric.slower_than is not None
                canary_bad, primary_bad = (
                    b
                    if isinstance(b, judging.Reading)
                    else judging.Reading(significance.count_above(b, metric.slower_than / 1000)[0])
                    for b in (canary_buckets, primary_buckets)
                )
        elif metric.template is models.MetricTemplate.ERROR_RATE and metric.compare is not None:
            canary_bad, primary_bad = await asyncio.gather(
                _read(provider, queries.error_count(canary, w), at),
                _read(provider, queries.error_count(primary, w), at),
            )
        canary_value, primary_value = await values
        return judging.MetricReadings(metric, canary_query, canary_value, primary_value, canary_bad, primary_bad, note)

    burn_windows = [spec.slo.burn_rate.short, spec.slo.burn_rate.long] if spec.slo is not None else []
    counts_and_burn, metrics = await asyncio.gather(
        asyncio.gather(
            _read(provider, queries.request_count(canary, window), at),
            _read(provider, queries.request_count(primary, window), at),
            *(_read(provider, queries.error_ratio(canary, w), at) for w in burn_windows),
        ),
        asyncio.gather(*(for_metric(metric) for metric in analysis.metrics)),
    )
    canary_requests, primary_requests, *burn = counts_and_burn
    burn_short, burn_long = burn if burn else (None, None)
    return judging.Measurements(
        at=at,
        window=window,
        weight=weight,
        canary_requests=canary_requests,
        primary_requests=primary_requests,
        metrics=list(metrics),
        burn_short=burn_short,
        burn_long=burn_long,
    )


async def error_budget(
    spec: models.CanaryRolloutSpec, namespace: str, at: datetime.datetime, provider: providers.MetricProvider
) -> judging.Reading:
    """The share of the error budget left over the SLO window (1 = untouched, <= 0 = exhausted)."""
    assert spec.slo is not None
    ratio = await _read(provider, queries.service_error_ratio(namespace, spec.target_ref.name, spec.slo.window), at)
    if ratio.value is None:
        return ratio
    return judging.Reading(1 - ratio.value / spec.slo.budget)
