"""The analysis judge: measurements in, a verdict with its reasons out.

Pure: no I/O, no clock. The handler takes the measurements (one instant query
per metric per arm, plus the request count of each arm) and hands them here.

Rules, in order, for every metric (every metric is judged at every check, so
one failure never hides another):
1. the provider did not answer, or refused the query  -> inconclusive;
2. the canary answered fewer than ``minRequests`` requests in the window -> inconclusive;
3. the query returned no number (no series, NaN) -> inconclusive;
4. the value is above ``max`` or below ``min`` -> fail; otherwise pass.
The check fails if any metric fails, is inconclusive if any metric is, and
passes only when every metric passed on enough data.
"""

from __future__ import annotations

import dataclasses
import datetime
import math

from canary_operator import models

UNITS = {
    models.MetricTemplate.ERROR_RATE: "%",
    models.MetricTemplate.LATENCY_P99: "ms",
    models.MetricTemplate.REQUEST_RATE: " req/s",
}

# Why a check was inconclusive; these become condition reasons.
UNREACHABLE = "PrometheusUnreachable"
QUERY_REJECTED = "QueryRejected"
INSUFFICIENT_TRAFFIC = "InsufficientTraffic"
NO_DATA = "NoData"


@dataclasses.dataclass(frozen=True)
class Reading:
    """One number from the provider, or why there is none."""

    value: float | None = None
    problem: str | None = None  # UNREACHABLE, QUERY_REJECTED or NO_DATA when value is None
    detail: str = ""

    @classmethod
    def missing(cls, problem: str, detail: str) -> Reading:
        return cls(None, problem, detail)


@dataclasses.dataclass(frozen=True)
class MetricReadings:
    metric: models.Metric
    query: str  # the canary's rendered PromQL, for the record
    canary: Reading
    primary: Reading


@dataclasses.dataclass(frozen=True)
class Measurements:
    at: datetime.datetime
    window: str
    weight: int
    canary_requests: Reading
    primary_requests: Reading
    metrics: list[MetricReadings]


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if abs(value) >= 100 or value == int(value):
        text = f"{value:.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}".rstrip("0").rstrip(".")
    else:
        text = f"{value:.3g}"
    return f"{text}{unit}"


def _limit(metric: models.Metric, unit: str) -> str:
    parts = []
    if metric.min is not None:
        parts.append(f">= {_fmt(metric.min, unit)}")
    if metric.max is not None:
        parts.append(f"<= {_fmt(metric.max, unit)}")
    return " and ".join(parts)


def _judge_metric(
    readings: MetricReadings, analysis: models.Analysis, canary_n: Reading, primary_n: Reading, window: str
) -> tuple[models.MetricResult, str | None]:
    metric = readings.metric
    unit = UNITS.get(metric.template, "") if metric.template else ""
    n = canary_n.value
    base = {
        "name": metric.name,
        "canary": readings.canary.value,
        "primary": readings.primary.value,
        "canary_requests": n,
        "primary_requests": primary_n.value,
        "limit": _limit(metric, unit),
        "query": readings.query,
    }

    def inconclusive(cause: str, reason: str) -> tuple[models.MetricResult, str | None]:
        return models.MetricResult(verdict=models.Verdict.INCONCLUSIVE, reason=reason, **base), cause

    for reading in (canary_n, readings.canary):
        if reading.problem in (UNREACHABLE, QUERY_REJECTED):
            return inconclusive(reading.problem, f"{metric.name}: {reading.detail}")
    if n is None or n < analysis.min_requests:
        have = 0 if n is None else int(round(n))
        return inconclusive(
            INSUFFICIENT_TRAFFIC,
            f"{metric.name}: {have} canary requests in {window}, need {analysis.min_requests}"
            f" ({analysis.min_requests - have} more)",
        )
    value = readings.canary.value
    if value is None or math.isnan(value):
        return inconclusive(NO_DATA, f"{metric.name}: no data for the canary ({readings.canary.detail or 'NaN'})")

    sample = f"n={int(round(n))}"
    versus = f", primary {_fmt(readings.primary.value, unit)}" if readings.primary.value is not None else ""
    if metric.max is not None and value > metric.max:
        reason = f"{metric.name} {_fmt(value, unit)} > max {_fmt(metric.max, unit)} ({sample}{versus})"
        return models.MetricResult(verdict=models.Verdict.FAIL, reason=reason, **base), None
    if metric.min is not None and value < metric.min:
        reason = f"{metric.name} {_fmt(value, unit)} < min {_fmt(metric.min, unit)} ({sample}{versus})"
        return models.MetricResult(verdict=models.Verdict.FAIL, reason=reason, **base), None
    reason = f"{metric.name} {_fmt(value, unit)} within {_limit(metric, unit)} ({sample}{versus})"
    return models.MetricResult(verdict=models.Verdict.PASS, reason=reason, **base), None


def judge(analysis: models.Analysis, measurements: Measurements) -> models.CheckRecord:
    results: list[models.MetricResult] = []
    causes: list[str] = []
    for readings in measurements.metrics:
        result, cause = _judge_metric(
            readings, analysis, measurements.canary_requests, measurements.primary_requests, measurements.window
        )
        results.append(result)
        if cause:
            causes.append(cause)

    failed = [r for r in results if r.verdict is models.Verdict.FAIL]
    unsure = [r for r in results if r.verdict is models.Verdict.INCONCLUSIVE]
    if failed:
        verdict, reason, cause = models.Verdict.FAIL, "; ".join(r.reason for r in failed), None
    elif unsure:
        verdict, reason, cause = models.Verdict.INCONCLUSIVE, unsure[0].reason, causes[0]
    else:
        verdict, reason, cause = models.Verdict.PASS, "; ".join(r.reason for r in results), None
    return models.CheckRecord(
        at=measurements.at.isoformat(),
        verdict=verdict,
        reason=reason,
        cause=cause,
        weight=measurements.weight,
        metrics=results,
    )
