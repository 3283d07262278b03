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


# ---------------------------------------------------------------- the builder: counts in, measurements out
#
# Every verdict on request counts rests on three numbers per arm and window: requests, 5xx answers
# and the latency histogram. ``build`` turns those into what the judge reads; ``measure`` fetches
# them from Prometheus, and the judge benchmark (``canary_bench.benchmarks.judge``) hands it counts
# from its traces, so both judge exactly the same thing.


@dataclasses.dataclass(frozen=True)
class Tally:
    """What one arm served over one window."""

    requests: judging.Reading
    errors: judging.Reading
    buckets: dict[float, float] | judging.Reading  # cumulative per upper bound (seconds), as ``le`` counts


@dataclasses.dataclass(frozen=True)
class Window:
    label: str  # as people read it: "10s", "3m20s since the canary started"
    seconds: float
    canary: Tally
    primary: Tally


def _error_counts(window: Window, what: str) -> judging.Counts:
    c, p = window.canary, window.primary
    return judging.Counts(window.label, c.errors, c.requests, p.errors, p.requests, what)


def _slow_counts(window: Window, bound_ms: float) -> judging.Counts:
    c, p = window.canary, window.primary
    canary_bad, primary_bad, what = _tails_over(c.buckets, p.buckets, bound_ms)
    return judging.Counts(window.label, canary_bad, c.requests, primary_bad, p.requests, what)


def _tails_over(canary: _Buckets, primary: _Buckets, bound_ms: float) -> tuple[judging.Reading, judging.Reading, str]:
    named = f"requests slower than {bound_ms:g}ms"
    results = []
    for buckets in (canary, primary):
        if isinstance(buckets, judging.Reading):
            return buckets, buckets, named
        bad, edge = significance.count_above(buckets, bound_ms / 1000)
        results.append(bad)
        named = f"requests slower than {edge * 1000:g}ms" if not math.isinf(edge) else named
    return judging.Reading(results[0]), judging.Reading(results[1]), named


def _error_percent(tally: Tally) -> judging.Reading:
    for reading in (tally.requests, tally.errors):
        if reading.value is None:
            return reading
    if not tally.requests.value:
        return judging.Reading.missing(judging.NO_DATA, "no requests in the window")
    return judging.Reading(100 * (tally.errors.value or 0.0) / tally.requests.value)


def _p99_ms(tally: Tally) -> judging.Reading:
    if isinstance(tally.buckets, judging.Reading):
        return tally.buckets
    found = significance.quantile_from_buckets(tally.buckets, 0.99)
    if found is None:
        return judging.Reading.missing(judging.NO_DATA, "no requests in the window")
    return judging.Reading(1000 * found[0])


def _limits(
    metric: models.Metric, recent: Window | None, since: Window | None, tighten: float
) -> tuple[judging.LimitCounts, ...]:
    """The metric's max/min as shares of bad requests, over the windows the judge tests them on."""
    limits = []
    for bound, value in (("max", metric.max), ("min", metric.min)):
        if value is None:
            continue
        limit = value * tighten if bound == "max" else value / tighten
        if metric.template is models.MetricTemplate.ERROR_RATE:
            share = limit / 100
            recent_counts = _error_counts(recent, metric.name) if recent is not None else None
            since_counts = _error_counts(since, metric.name) if since is not None else None
        elif metric.template is models.MetricTemplate.LATENCY_P99:
            share = 0.01  # a p99 beyond a bound is more than 1% of requests beyond it
            recent_counts = _slow_counts(recent, limit) if recent is not None else None
            since_counts = _slow_counts(since, limit) if since is not None else None
        else:
            return ()
        limits.append(judging.LimitCounts(bound, share, recent_counts, since_counts))
    return tuple(limits)


def _compare_counts(metric: models.Metric, window: Window) -> judging.Counts:
    if metric.template is models.MetricTemplate.LATENCY_P99:
        canary_bad, primary_bad, what = _tails(metric, window.canary.buckets, window.primary.buckets)
        c, p = window.canary, window.primary
        return judging.Counts(window.label, canary_bad, c.requests, primary_bad, p.requests, what)
    return _error_counts(window, metric.name)


def build(
    analysis: models.Analysis,
    *,
    at: datetime.datetime,
    weight: int,
    recent: dict[str, Window],
    since_start: Window | None = None,
    step_requests: judging.Reading | None = None,
    queries_by_metric: dict[str, tuple[str, judging.Reading, judging.Reading]] | None = None,
    burn: tuple[judging.Reading, judging.Reading] | None = None,
    tighten: float = 1.0,
) -> judging.Measurements:
    """The measurements of one check from counts.

    ``recent``: the tallies per metric window (``analysis.interval`` at least); empty for the
    continuous test between checks, which reads ``since_start`` only. ``since_start``: since the
    canary started; a comparison uses it only when longer than its window, a max/min always (the
    recent window is the whole canary so far at the first check). ``queries_by_metric``: per metric
    the canary's PromQL for the record and, for a metric not measured from counts (request-rate, a
    custom query), both arms' values.
    """
    given = queries_by_metric or {}
    readings = []
    for metric in analysis.metrics:
        w = queries.window(metric, analysis)
        window = recent.get(w)
        since = since_start
        longer = since is not None and (window is None or since.seconds > window.seconds)
        query, canary_value, primary_value = given.get(metric.name, ("", _missing(), _missing()))
        source = window or since
        note = ""
        if metric.template is models.MetricTemplate.ERROR_RATE and source is not None:
            canary_value, primary_value = _error_percent(source.canary), _error_percent(source.primary)
        elif metric.template is models.MetricTemplate.LATENCY_P99 and source is not None:
            canary_value, primary_value = _p99_ms(source.canary), _p99_ms(source.primary)
            note = "; ".join(
                n
                for n in (_tail_note("canary", source.canary.buckets), _tail_note("primary", source.primary.buckets))
                if n
            )
        elif metric.template is models.MetricTemplate.REQUEST_RATE and source is not None:
            canary_value, primary_value = (_rate(t, source.seconds) for t in (source.canary, source.primary))
        compare_recent = compare_since = None
        if metric.compare is not None:
            compare_recent = _compare_counts(metric, window) if window is not None else None
            compare_since = _compare_counts(metric, since) if since is not None and longer else None
        limit_since = since if longer else window  # at first, the last window is all the canary served
        limits = _limits(metric, window, limit_since, tighten) if source is not None else ()
        readings.append(
            judging.MetricReadings(
                metric, query, canary_value, primary_value, compare_recent, compare_since, note, limits
            )
        )
    main = recent.get(analysis.interval) or since_start
    return judging.Measurements(
        at=at,
        window=main.label if main is not None else analysis.interval,
        weight=weight,
        canary_requests=main.canary.requests if main is not None else _missing(),
        primary_requests=main.primary.requests if main is not None else _missing(),
        metrics=readings,
        burn_short=burn[0] if burn else None,
        burn_long=burn[1] if burn else None,
        step_requests=step_requests,
    )


def _missing() -> judging.Reading:
    return judging.Reading.missing(judging.NO_DATA, "not measured")


def _rate(tally: Tally, seconds: float) -> judging.Reading:
    if tally.requests.value is None:
        return tally.requests
    return judging.Reading(tally.requests.value / seconds if seconds else math.nan)


# ---------------------------------------------------------------- fetching the counts from Prometheus


async def _tally(
    provider: providers.MetricProvider, arm: queries.Arm, w: str, at: datetime.datetime, errors: bool, latency: bool
) -> Tally:
    no = judging.Reading.missing(judging.NO_DATA, "not asked")
    requests, error_count, buckets = await asyncio.gather(
        _read(provider, queries.request_count(arm, w), at),
        _read(provider, queries.error_count(arm, w), at) if errors else _const(no),
        _buckets(provider, queries.latency_buckets(arm, w), at, arm.source.le_seconds) if latency else _const(no),
    )
    return Tally(requests, error_count, buckets)


async def _const(value: T) -> T:
    return value


async def _window(
    provider: providers.MetricProvider,
    arms: tuple[queries.Arm, queries.Arm],
    w: str,
    label: str,
    at: datetime.datetime,
    analysis: models.Analysis,
) -> Window:
    templates = {m.template for m in analysis.metrics}
    errors = models.MetricTemplate.ERROR_RATE in templates
    latency = models.MetricTemplate.LATENCY_P99 in templates
    canary, primary = await asyncio.gather(
        _tally(provider, arms[0], w, at, errors, latency), _tally(provider, arms[1], w, at, errors, latency)
    )
    return Window(label, models.parse_duration(w), canary, primary)


async def measure(
    spec: models.CanaryRolloutSpec,
    namespace: str,
    weight: int,
    at: datetime.datetime,
    provider: providers.MetricProvider,
    since: datetime.datetime | None = None,
    *,
    step_since: datetime.datetime | None = None,
    tighten: float = 1.0,
) -> judging.Measurements:
    """One check's measurements; ``since``: when the canary started; ``step_since``: when this step's weight settled."""
    analysis = spec.analysis
    canary, primary = queries.arms(namespace, spec.target_ref.name, queries.source_of(spec.traffic_routing))
    elapsed = int((at - since).total_seconds()) if since is not None else 0
    windows = sorted({analysis.interval, *(queries.window(m, analysis) for m in analysis.metrics)})
    longest = max(models.parse_duration(w) for w in windows)
    since_label = f"{_duration(elapsed)} since the canary started"

    async def values(metric: models.Metric) -> tuple[str, judging.Reading, judging.Reading]:
        query = queries.render(metric, analysis, canary)
        if metric.template is not None:
            return query, _missing(), _missing()  # measured from the counts
        canary_value, primary_value = await asyncio.gather(
            _read(provider, query, at), _read(provider, queries.render(metric, analysis, primary), at)
        )
        return query, canary_value, primary_value

    async def step_count() -> judging.Reading | None:
        if step_since is None:
            return None
        seconds = max(int((at - step_since).total_seconds()), 1)
        return await _read(provider, queries.request_count(canary, f"{seconds}s"), at)

    burn_windows = [spec.slo.burn_rate.short, spec.slo.burn_rate.long] if spec.slo is not None else []
    recent_list, since_window, metric_values, step, burn = await asyncio.gather(
        asyncio.gather(*(_window(provider, (canary, primary), w, w, at, analysis) for w in windows)),
        _window(provider, (canary, primary), f"{elapsed}s", since_label, at, analysis)
        if elapsed > longest
        else _const(None),
        asyncio.gather(*(values(m) for m in analysis.metrics)),
        step_count(),
        asyncio.gather(*(_read(provider, queries.error_ratio(canary, w), at) for w in burn_windows)),
    )
    return build(
        analysis,
        at=at,
        weight=weight,
        recent=dict(zip(windows, recent_list, strict=True)),
        since_start=since_window,
        step_requests=step,
        queries_by_metric={m.name: v for m, v in zip(analysis.metrics, metric_values, strict=True)},
        burn=(burn[0], burn[1]) if burn else None,
        tighten=tighten,
    )


async def measure_since_start(
    spec: models.CanaryRolloutSpec,
    namespace: str,
    weight: int,
    at: datetime.datetime,
    provider: providers.MetricProvider,
    since: datetime.datetime,
    *,
    tighten: float = 1.0,
) -> judging.Measurements:
    """The counts since the canary started, alone: what the continuous test between checks reads (6 queries)."""
    canary, primary = queries.arms(namespace, spec.target_ref.name, queries.source_of(spec.traffic_routing))
    elapsed = max(int((at - since).total_seconds()), 1)
    label = f"{_duration(elapsed)} since the canary started"
    window = await _window(provider, (canary, primary), f"{elapsed}s", label, at, spec.analysis)
    return build(spec.analysis, at=at, weight=weight, recent={}, since_start=window, tighten=tighten)


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
