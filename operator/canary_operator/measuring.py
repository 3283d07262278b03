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
    except providers.BadResponseError as exc:
        telemetry.query_errors.labels("bad_response").inc()
        return judging.Reading.missing(judging.BAD_RESPONSE, str(exc))
    except providers.NoDataError as exc:
        return judging.Reading.missing(judging.NO_DATA, str(exc))
    finally:
        telemetry.query_duration.observe(time.perf_counter() - began)


async def _read(provider: providers.MetricProvider, promql: str, at: datetime.datetime) -> judging.Reading:
    result = await _guard(lambda: provider.query(promql, at))
    return result if isinstance(result, judging.Reading) else judging.Reading(result)


async def _buckets(
    provider: providers.MetricProvider, promql: str, at: datetime.datetime, le_seconds: float = 1.0
) -> dict[float, float] | judging.Reading:
    """Counts per bucket bound, the bounds in seconds whatever unit the histogram counts in."""
    result = await _guard(lambda: provider.query_by(promql, at, "le"))
    if isinstance(result, judging.Reading):
        return result
    return {float(le) * le_seconds: count for le, count in result.items()}


_Buckets = dict[float, float] | judging.Reading


async def _arm_buckets(
    provider: providers.MetricProvider, canary: queries.Arm, primary: queries.Arm, window: str, at: datetime.datetime
) -> tuple[_Buckets, _Buckets]:
    canary_buckets, primary_buckets = await asyncio.gather(
        _buckets(provider, queries.latency_buckets(canary, window), at, canary.source.le_seconds),
        _buckets(provider, queries.latency_buckets(primary, window), at, primary.source.le_seconds),
    )
    return canary_buckets, primary_buckets


def _tail_note(role: str, buckets: _Buckets) -> str:
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


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n) or "0s"


def _tails(metric: models.Metric, canary: _Buckets, primary: _Buckets) -> tuple[judging.Reading, judging.Reading, str]:
    """Both arms' requests slower than the metric's bound (or the primary's p99), and what that bound is."""
    fixed = metric.slower_than
    named = f"requests slower than {fixed:g}ms" if fixed is not None else "requests slower than the primary's p99"
    if isinstance(canary, judging.Reading):
        return canary, canary, named
    if isinstance(primary, judging.Reading):
        return primary, primary, named
    found = significance.tail_counts(canary, primary, fixed / 1000 if fixed is not None else None)
    if found is None:
        missing = judging.Reading.missing(judging.NO_DATA, "no primary requests to take a p99 from")
        return missing, missing, named
    canary_bad, primary_bad, edge = found
    # Histograms only know their bucket edges: say which one was used.
    what = f"requests slower than {edge * 1000:g}ms" + ("" if fixed is not None else " (the primary's p99)")
    return judging.Reading(canary_bad), judging.Reading(primary_bad), what


async def _counts(
    provider: providers.MetricProvider,
    metric: models.Metric,
    canary: queries.Arm,
    primary: queries.Arm,
    window: str,
    label: str,
    at: datetime.datetime,
    buckets: tuple[_Buckets, _Buckets] | None = None,
) -> judging.Counts:
    """Bad and total requests of both arms over one window, for a comparison.

    ``buckets``: the latency histograms of both arms over this window, when already fetched.
    """
    totals = asyncio.gather(
        _read(provider, queries.request_count(canary, window), at),
        _read(provider, queries.request_count(primary, window), at),
    )
    what = metric.name
    if metric.template is models.MetricTemplate.LATENCY_P99:
        if buckets is None:
            buckets = await _arm_buckets(provider, canary, primary, window, at)
        canary_bad, primary_bad, what = _tails(metric, *buckets)
    else:
        canary_bad, primary_bad = await asyncio.gather(
            _read(provider, queries.error_count(canary, window), at),
            _read(provider, queries.error_count(primary, window), at),
        )
    canary_total, primary_total = await totals
    return judging.Counts(label, canary_bad, canary_total, primary_bad, primary_total, what)


async def measure(
    spec: models.CanaryRolloutSpec,
    namespace: str,
    weight: int,
    at: datetime.datetime,
    provider: providers.MetricProvider,
    since: datetime.datetime | None = None,
) -> judging.Measurements:
    """One check's measurements; ``since`` is when the canary started (comparisons accumulate from there)."""
    analysis = spec.analysis
    canary, primary = queries.arms(namespace, spec.target_ref.name, queries.source_of(spec.traffic_routing))
    window = analysis.interval
    elapsed = int((at - since).total_seconds()) if since is not None else 0

    async def for_metric(metric: models.Metric) -> judging.MetricReadings:
        w = queries.window(metric, analysis)
        canary_query = queries.render(metric, analysis, canary)
        values = asyncio.gather(
            _read(provider, canary_query, at), _read(provider, queries.render(metric, analysis, primary), at)
        )
        buckets = None
        note = ""
        if metric.template is models.MetricTemplate.LATENCY_P99:
            buckets = await _arm_buckets(provider, canary, primary, w, at)
            tails = (_tail_note("canary", buckets[0]), _tail_note("primary", buckets[1]))
            note = "; ".join(n for n in tails if n)
        recent = since_start = None
        if metric.compare is not None:
            recent = await _counts(provider, metric, canary, primary, w, w, at, buckets)
            if elapsed > models.parse_duration(w):
                label = f"{_duration(elapsed)} since the canary started"
                since_start = await _counts(provider, metric, canary, primary, f"{elapsed}s", label, at)
        canary_value, primary_value = await values
        return judging.MetricReadings(metric, canary_query, canary_value, primary_value, recent, since_start, note)

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
    source = queries.source_of(spec.traffic_routing)
    promql = queries.service_error_ratio(namespace, spec.target_ref.name, spec.slo.window, source)
    ratio = await _read(provider, promql, at)
    if ratio.value is None:
        return ratio
    return judging.Reading(1 - ratio.value / spec.slo.budget)
