"""The analysis judge: measurements in, a verdict with its reasons out.

Pure: no I/O, no clock. The handler takes the measurements (instant queries for
both arms over one window, at one evaluation time) and hands them here.

Every metric is judged at every check (one failure never hides another), in
these steps:
1. the provider did not answer, refused the query, or answered something that is
   not a Prometheus answer -> inconclusive;
2. an absolute limit (``max``/``min``): fewer than ``minRequests`` canary
   requests in the window, or fewer than 100 for a p99 (the tail would rest on
   no request at all) -> inconclusive; no number -> inconclusive; out of range
   -> fail;
3. ``compare: primary``: the canary's share of bad requests (5xx, or slower
   than ``slowerThan``) against the primary's with ``significance.compare``:
   worse beyond tolerance at the confidence asked -> fail; within tolerance
   at that confidence -> pass; otherwise inconclusive, saying how many more
   canary requests would settle it;
4. an SLO: the canary's burn rate over both the short and the long window
   above the factor -> fail.
A metric fails if any of its parts fails, is inconclusive if any part is, and
passes only when every part passed. The check follows the same rule.
"""

from __future__ import annotations

import dataclasses
import datetime
import math

from canary_operator import models, significance

UNITS = {
    models.MetricTemplate.ERROR_RATE: "%",
    models.MetricTemplate.LATENCY_P99: "ms",
    models.MetricTemplate.REQUEST_RATE: " req/s",
}
P99_MIN_REQUESTS = 100

# Why a check was inconclusive; these become condition reasons (one vocabulary: models.Reason).
UNREACHABLE = models.Reason.PROMETHEUS_UNREACHABLE
QUERY_REJECTED = models.Reason.QUERY_REJECTED
BAD_RESPONSE = models.Reason.PROMETHEUS_BAD_RESPONSE
INSUFFICIENT_TRAFFIC = models.Reason.INSUFFICIENT_TRAFFIC
NO_DATA = models.Reason.NO_DATA
BURN_RATE = "slo-burn-rate"


@dataclasses.dataclass(frozen=True)
class Reading:
    """One number from the provider, or why there is none."""

    value: float | None = None
    problem: str | None = None  # UNREACHABLE, QUERY_REJECTED, BAD_RESPONSE or NO_DATA when value is None
    detail: str = ""

    @classmethod
    def missing(cls, problem: str, detail: str) -> Reading:
        return cls(None, problem, detail)


@dataclasses.dataclass(frozen=True)
class Counts:
    """Bad and total requests of each arm over one window: what a comparison tests."""

    window: str  # as shown to people: "1m", or "12m since the canary started"
    canary_bad: Reading
    canary_total: Reading
    primary_bad: Reading
    primary_total: Reading
    what: str = ""  # what a bad request is, e.g. "requests slower than 500ms"


@dataclasses.dataclass(frozen=True)
class MetricReadings:
    metric: models.Metric
    query: str  # the canary's rendered PromQL, for the record
    canary: Reading
    primary: Reading
    recent: Counts | None = None  # compare: the counts over the metric's window
    since_start: Counts | None = None  # compare: the counts since the canary started (when longer)
    note: str = ""  # what the value rests on (e.g. the buckets behind a p99)


@dataclasses.dataclass(frozen=True)
class Measurements:
    at: datetime.datetime
    window: str
    weight: int
    canary_requests: Reading
    primary_requests: Reading
    metrics: list[MetricReadings]
    burn_short: Reading | None = None  # SLO: the canary's error ratio over the burn-rate windows
    burn_long: Reading | None = None


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


def _pct(share: float) -> str:
    return "n/a" if math.isnan(share) else f"{_fmt(100 * share)}%"


def _pp(share: float) -> str:
    return f"{'+' if share >= 0 else ''}{_fmt(100 * share)}pp"


def _p(value: float) -> str:
    return "p<0.001" if value < 0.001 else f"p={value:.3f}"


def _limit(metric: models.Metric, unit: str, tighten: float) -> str:
    parts = []
    if metric.min is not None:
        parts.append(f">= {_fmt(metric.min / tighten, unit)}")
    if metric.max is not None:
        parts.append(f"<= {_fmt(metric.max * tighten, unit)}")
    if metric.compare is not None:
        tolerance = []
        if metric.max_increase:
            tolerance.append(f"+{_fmt(metric.max_increase * tighten)}pp")
        if metric.max_ratio and metric.max_ratio > 1:
            tolerance.append(f"x{_fmt(1 + (metric.max_ratio - 1) * tighten)}")
        parts.append(f"primary {' '.join(tolerance)} at {_fmt(100 * metric.confidence)}% confidence")
    return " and ".join(parts)


@dataclasses.dataclass
class _Part:
    verdict: models.Verdict
    reason: str
    cause: str | None = None


def _absolute(
    readings: MetricReadings, analysis: models.Analysis, n: float | None, window: str, unit: str, tighten: float
) -> _Part:
    metric = readings.metric
    name = metric.name
    needed = analysis.min_requests
    if metric.template is models.MetricTemplate.LATENCY_P99:
        needed = max(needed, P99_MIN_REQUESTS)
    if n is None or n < needed:
        have = 0 if n is None else int(round(n))
        why = " (a p99 needs 100)" if needed == P99_MIN_REQUESTS and needed > analysis.min_requests else ""
        return _Part(
            models.Verdict.INCONCLUSIVE,
            f"{name}: {have} canary requests in {window}, need {needed}{why} ({needed - have} more)",
            INSUFFICIENT_TRAFFIC,
        )
    value = readings.canary.value
    if value is None or math.isnan(value):
        return _Part(
            models.Verdict.INCONCLUSIVE, f"{name}: no data for the canary ({readings.canary.detail or 'NaN'})", NO_DATA
        )
    sample = f"n={int(round(n))}"
    versus = f", primary {_fmt(readings.primary.value, unit)}" if readings.primary.value is not None else ""
    note = f"; {readings.note}" if readings.note else ""
    if metric.max is not None and value > metric.max * tighten:
        return _Part(
            models.Verdict.FAIL,
            f"{name} {_fmt(value, unit)} > max {_fmt(metric.max * tighten, unit)} ({sample}{versus}){note}",
        )
    if metric.min is not None and value < metric.min / tighten:
        return _Part(
            models.Verdict.FAIL,
            f"{name} {_fmt(value, unit)} < min {_fmt(metric.min / tighten, unit)} ({sample}{versus}){note}",
        )
    return _Part(models.Verdict.PASS, f"{name} {_fmt(value, unit)} within limits ({sample}{versus}){note}")


def _compare_counts(
    metric: models.Metric, counts: Counts, tighten: float, confidence: float, sequential: bool
) -> tuple[_Part, significance.Comparison | None]:
    """One comparison over one window; the part it contributes to the metric's verdict."""
    readings = (counts.canary_bad, counts.canary_total, counts.primary_bad, counts.primary_total)
    for reading in readings:
        if reading.value is None:
            cause = reading.problem or NO_DATA
            return _Part(models.Verdict.INCONCLUSIVE, f"{metric.name}: {reading.detail or 'no data'}", cause), None
    canary_bad, canary_total, primary_bad, primary_total = (r.value or 0.0 for r in readings)
    result = significance.compare(
        canary_bad,
        canary_total,
        primary_bad,
        primary_total,
        increase=(metric.max_increase or 0.0) * tighten / 100,
        ratio=1 + ((metric.max_ratio or 1.0) - 1) * tighten,
        confidence=confidence,
        sequential=sequential,
    )
    what = counts.what or metric.name
    head = (
        f"{what} {_pct(result.canary_share)} vs primary {_pct(result.primary_share)}"
        f" (n={round(canary_total)}/{round(primary_total)} over {counts.window})"
    )
    excess = result.canary_share - result.primary_share if not math.isnan(result.canary_share) else math.nan
    tolerance = _pp(result.allowed - (0 if math.isnan(result.primary_share) else result.primary_share))
    if result.verdict is models.Verdict.FAIL:
        return _Part(models.Verdict.FAIL, f"{head}, {_pp(excess)} > {tolerance}, {_p(result.p_value)}"), result
    if result.verdict is models.Verdict.PASS:
        return _Part(models.Verdict.PASS, f"{head}, within {tolerance}, {_p(result.p_value)}"), result
    reason = f"{head}: cannot tell from {tolerance} yet, need ~{result.needed} more canary requests"
    return _Part(models.Verdict.INCONCLUSIVE, reason, INSUFFICIENT_TRAFFIC), result


def _compared(readings: MetricReadings, tighten: float) -> tuple[_Part, significance.Comparison | None]:
    """Canary against primary over the last window (fast) and since the canary started (patient).

    The last window is judged with a fixed-sample interval: it reacts within one check when there is
    traffic, and ``failureThreshold`` guards it against a fluke. The counts since the canary started
    are judged with an always-valid interval, so looking again at every check costs no false
    rollbacks, and a low-traffic canary gathers evidence until it can be judged. The false-rollback
    budget ``1 - confidence`` is split between the two. The metric fails if either window shows the
    canary worse than tolerated, passes if one shows it within tolerance and neither fails (and the
    canary served requests in the last window), and is inconclusive otherwise; the requests still
    needed then come from the counts since the start.
    """
    metric = readings.metric
    windows = [(c, sequential) for c, sequential in ((readings.recent, False), (readings.since_start, True)) if c]
    if not windows:
        return _Part(models.Verdict.INCONCLUSIVE, f"{metric.name}: no request counts to compare", NO_DATA), None
    confidence = 1 - (1 - metric.confidence) / len(windows)
    judged = [_compare_counts(metric, counts, tighten, confidence, sequential) for counts, sequential in windows]
    note = f"; {readings.note}" if readings.note else ""
    for part, result in judged:
        if part.verdict is models.Verdict.FAIL:
            return _Part(part.verdict, part.reason + note), result
    if readings.recent is not None and not readings.recent.canary_total.value:
        # Old evidence may condemn a canary that went silent, never clear it.
        reason = f"{metric.name}: no canary requests in the last {readings.recent.window}"
        return _Part(models.Verdict.INCONCLUSIVE, reason, INSUFFICIENT_TRAFFIC), judged[0][1]
    for part, result in judged:
        if part.verdict is models.Verdict.PASS:
            return _Part(part.verdict, part.reason + note), result
    part, result = judged[-1]
    return part, result


def _combine(parts: list[_Part]) -> _Part:
    for wanted in (models.Verdict.FAIL, models.Verdict.INCONCLUSIVE):
        chosen = [p for p in parts if p.verdict is wanted]
        if chosen:
            return _Part(wanted, "; ".join(p.reason for p in chosen), next((p.cause for p in chosen if p.cause), None))
    return _Part(models.Verdict.PASS, "; ".join(p.reason for p in parts))


def _judge_metric(
    readings: MetricReadings, analysis: models.Analysis, measurements: Measurements, tighten: float
) -> tuple[models.MetricResult, str | None]:
    metric = readings.metric
    unit = UNITS.get(metric.template, "") if metric.template else ""
    n, n_primary = measurements.canary_requests.value, measurements.primary_requests.value
    record: dict[str, object] = {
        "name": metric.name,
        "canary": readings.canary.value,
        "primary": readings.primary.value,
        "canary_requests": n,
        "primary_requests": n_primary,
        "limit": _limit(metric, unit, tighten),
        "query": readings.query,
    }
    used = [measurements.canary_requests, readings.canary]
    for reading in used:
        if reading is not None and reading.problem in (UNREACHABLE, QUERY_REJECTED, BAD_RESPONSE):
            result = models.MetricResult(
                verdict=models.Verdict.INCONCLUSIVE, reason=f"{metric.name}: {reading.detail}", **record
            )
            return result, reading.problem

    parts = []
    if metric.max is not None or metric.min is not None:
        parts.append(_absolute(readings, analysis, n, measurements.window, unit, tighten))
    if metric.compare is not None:
        part, comparison = _compared(readings, tighten)
        parts.append(part)
        if comparison is not None:
            record.update(
                statistic=f"two proportions: {comparison.method}",
                p_value=round(comparison.p_value, 6),
                bound=f"{_pp(comparison.lower)}..{_pp(comparison.upper)} over tolerance",
                needed_requests=comparison.needed or None,
            )
    outcome = _combine(parts)
    return models.MetricResult(verdict=outcome.verdict, reason=outcome.reason, **record), outcome.cause


def _burn(slo: models.SLO, measurements: Measurements) -> tuple[models.MetricResult, str | None] | None:
    if measurements.burn_short is None or measurements.burn_long is None:
        return None
    rule = slo.burn_rate
    limit = f"burn < {_fmt(rule.factor)}x over {rule.short} or {rule.long}"
    for reading in (measurements.burn_short, measurements.burn_long):
        if reading.value is None or math.isnan(reading.value):
            cause = reading.problem or NO_DATA
            reason = f"{BURN_RATE}: no error ratio for the canary ({reading.detail or 'no requests'})"
            return models.MetricResult(
                name=BURN_RATE, verdict=models.Verdict.INCONCLUSIVE, reason=reason, limit=limit
            ), cause
    assert measurements.burn_short.value is not None and measurements.burn_long.value is not None
    short = measurements.burn_short.value / slo.budget
    long = measurements.burn_long.value / slo.budget
    text = f"burn rate {_fmt(short)}x over {rule.short}, {_fmt(long)}x over {rule.long} (SLO {_fmt(slo.objective)}%)"
    verdict = models.Verdict.FAIL if short > rule.factor and long > rule.factor else models.Verdict.PASS
    reason = f"{text} {'>' if verdict is models.Verdict.FAIL else 'within'} {_fmt(rule.factor)}x"
    return models.MetricResult(name=BURN_RATE, verdict=verdict, reason=reason, canary=short, limit=limit), None


def judge(
    analysis: models.Analysis,
    measurements: Measurements,
    *,
    slo: models.SLO | None = None,
    tighten: float = 1.0,
) -> models.CheckRecord:
    """The check's record; ``tighten`` (<= 1) scales every limit when the error budget runs low."""
    results: list[models.MetricResult] = []
    causes: list[str | None] = []
    for readings in measurements.metrics:
        result, cause = _judge_metric(readings, analysis, measurements, tighten)
        results.append(result)
        causes.append(cause)
    burn = _burn(slo, measurements) if slo is not None else None
    if burn is not None:
        results.append(burn[0])
        causes.append(burn[1])

    failed = [r for r in results if r.verdict is models.Verdict.FAIL]
    unsure = [(r, c) for r, c in zip(results, causes, strict=True) if r.verdict is models.Verdict.INCONCLUSIVE]
    if failed:
        verdict, reason, cause = models.Verdict.FAIL, "; ".join(r.reason for r in failed), None
    elif unsure:
        verdict, reason, cause = models.Verdict.INCONCLUSIVE, unsure[0][0].reason, unsure[0][1]
    else:
        verdict, reason, cause = models.Verdict.PASS, "; ".join(r.reason for r in results), None
    return models.CheckRecord(
        at=measurements.at.isoformat(),
        window=measurements.window,
        verdict=verdict,
        reason=reason,
        cause=cause,
        weight=measurements.weight,
        metrics=results,
    )
