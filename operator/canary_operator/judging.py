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
class LimitCounts:
    """A max or min of error-rate or latency-p99 as a share of bad requests, over the windows it is tested on.

    ``max: 1`` on an error rate: the share of 5xx may not exceed 1%. ``max: 500`` on a p99: the share
    of requests slower than 500 ms may not exceed 1% (the p99 is above 500 ms exactly then).
    """

    bound: str  # "max" or "min"
    share: float  # the limit as a share of requests (0.01)
    recent: Counts | None  # the metric's window, tested once with an exact test (None: the continuous test)
    since_start: Counts | None = None  # since the canary started: tested with the always-valid test


@dataclasses.dataclass(frozen=True)
class MetricReadings:
    metric: models.Metric
    query: str  # the canary's rendered PromQL, for the record
    canary: Reading
    primary: Reading
    recent: Counts | None = None  # compare: the counts over the metric's window
    since_start: Counts | None = None  # compare: the counts since the canary started (when longer)
    note: str = ""  # what the value rests on (e.g. the buckets behind a p99)
    limits: tuple[LimitCounts, ...] = ()  # max/min judged on counts (error-rate and latency-p99)


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
    step_requests: Reading | None = None  # canary requests since the current step's weight settled (pass rule)


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


PRIMARY_BREACHES = "PrimaryBreaches"
POWER = 0.9  # the chance of catching a regression that a promotion's minimum detectable effect is stated at


@dataclasses.dataclass
class _Limited:
    """A max/min on counts: the part it adds to the metric's verdict, and the evidence since the start."""

    part: _Part
    evidence: models.Evidence | None = None
    detectable: str | None = None  # the regression the evidence since the start would have caught
    p_value: float | None = None  # the smallest p of the windows tested


def _limit_text(metric: models.Metric, limit: LimitCounts, unit: str, tighten: float) -> str:
    value = (metric.max or 0.0) * tighten if limit.bound == "max" else (metric.min or 0.0) / tighten
    return f"{limit.bound} {_fmt(value, unit)}"


def _share_of(counts: Counts, arm: str) -> tuple[float, float] | None:
    bad = counts.canary_bad if arm == "canary" else counts.primary_bad
    total = counts.canary_total if arm == "canary" else counts.primary_total
    if bad.value is None or total.value is None:
        return None
    return bad.value, total.value


def _primary_breaches(counts: Counts, limit: LimitCounts, sequential: bool) -> float | None:
    """The primary's share over the same window when it is beyond the limit too (a shared incident).

    Since the start, "beyond" begins at half the limit (twice it for a min): those counts keep an
    incident that is over, and a canary whose own pods wobbled a little more during it would carry
    that for the rest of the canary, while the primary's share, averaged over more quiet minutes, is
    back under the limit.
    """
    found = _share_of(counts, "primary")
    if found is None or found[1] < 1:
        return None
    share = found[0] / found[1]
    slack = INCIDENT_RATIO if sequential else 1.0
    beyond = share > limit.share / slack if limit.bound == "max" else share < limit.share * slack
    return share if beyond else None


# During a shared incident both arms' shares swing with the failing dependency, and each arm's own
# pods add their own wobble on top: a canary blamed for being merely worse than the primary would be
# blamed for that wobble. It is blamed when its share is shown above INCIDENT_RATIO times the primary's.
INCIDENT_RATIO = 2.0


def _worse_than_primary(counts: Counts, bound: str, alpha: float, sequential: bool) -> bool:
    """Is the canary's share shown above ``INCIDENT_RATIO`` times the primary's over this window?"""
    canary, primary = _share_of(counts, "canary"), _share_of(counts, "primary")
    if canary is None or primary is None or canary[1] < 1 or primary[1] < 1:
        return False
    worse, better = (canary, primary) if bound == "max" else (primary, canary)
    if sequential:
        return significance.always_valid_ratio_p(*worse, *better, ratio=INCIDENT_RATIO) <= alpha
    compared = significance.compare(*worse, *better, increase=0.0, ratio=INCIDENT_RATIO, confidence=1 - alpha)
    return compared.verdict is models.Verdict.FAIL


def _needed_for_limit(bad: float, total: float, limit: LimitCounts, alpha: float) -> int | None:
    """Canary requests to add for the always-valid test to show a canary like this one within the limit."""
    share = bad / total if total >= 1 else 0.0
    needed = significance.requests_to_show(share, limit.share, alpha, above=limit.bound != "max")
    return None if needed is None else max(1, math.ceil(needed - total))


def _limited(
    readings: MetricReadings,
    analysis: models.Analysis,
    unit: str,
    tighten: float,
    limit: LimitCounts,
    mde: bool = False,
) -> _Limited:
    """One max or min judged on counts: an exact test on the last window, an always-valid one since the start.

    Each gets half of ``1 - confidence``. Fail when either shows the canary beyond the limit, unless
    the primary is beyond it too over that window (a shared incident: inconclusive, unless the canary
    is also significantly worse than the primary); pass when either shows it within (with
    ``minRequests`` in the last window, or since the start); inconclusive otherwise.
    """
    metric = readings.metric
    alpha = (1 - metric.confidence) / 2
    above = limit.bound == "max"
    limit_text = _limit_text(metric, limit, unit, tighten)
    what = next((c.what for c in (limit.recent, limit.since_start) if c is not None and c.what), metric.name)
    note = f"; {readings.note}" if readings.note else ""
    windows = [(limit.recent, False)] if limit.recent is not None else []
    if limit.since_start is not None:
        windows.append((limit.since_start, True))
    evidence = None
    detectable = None
    outcomes: list[tuple[models.Verdict, str, str | None]] = []
    p_values: list[float] = []
    for counts, sequential in windows:
        found = _share_of(counts, "canary")
        if found is None:
            reading = counts.canary_bad if counts.canary_bad.value is None else counts.canary_total
            outcomes.append(
                (
                    models.Verdict.INCONCLUSIVE,
                    f"{metric.name}: {reading.detail or 'no data'}",
                    reading.problem or NO_DATA,
                )
            )
            continue
        bad, total = found
        enough = total >= analysis.min_requests
        if not sequential and not enough:
            have = int(round(total))
            outcomes.append(
                (
                    models.Verdict.INCONCLUSIVE,
                    f"{metric.name}: {have} canary requests in {counts.window}, need {analysis.min_requests}"
                    f" ({analysis.min_requests - have} more)",
                    INSUFFICIENT_TRAFFIC,
                )
            )
            continue
        test = significance.against_limit(
            bad, total, limit.share, above=above, confidence=1 - alpha, sequential=sequential
        )
        p_values.append(test.p_value)
        sample = f"{round(bad)}/{round(total)} over {counts.window}"
        p_text = f"{'always-valid ' if sequential else ''}{_p(test.p_value)}"
        head = f"{what} {_pct(test.share)}" if what == metric.name else f"{metric.name}: {what} {_pct(test.share)}"
        verdict, reason, cause = test.verdict, "", None
        if verdict is models.Verdict.FAIL:
            breach = _primary_breaches(counts, limit, sequential) if analysis.incident_aware else None
            if breach is not None and not _worse_than_primary(counts, limit.bound, alpha, sequential):
                verdict, cause = models.Verdict.INCONCLUSIVE, PRIMARY_BREACHES
                reason = (
                    f"{head} beyond {limit_text} ({sample}, {p_text}), but the primary"
                    f" {'is near the limit' if sequential else 'breaches'} too"
                    f" ({_pct(breach)}): not specific to the canary"
                )
            else:
                versus = f", primary {_pct(breach)}: the canary over {INCIDENT_RATIO:g}x worse" if breach else ""
                reason = f"{head} {'>' if above else '<'} {limit_text} ({sample}, {p_text}{versus})"
        elif verdict is models.Verdict.PASS and (sequential and not enough):
            verdict = models.Verdict.INCONCLUSIVE
        if verdict is models.Verdict.PASS:
            reason = f"{head} within {limit_text} ({sample}, {p_text})"
        elif verdict is models.Verdict.INCONCLUSIVE and not reason:
            needed = _needed_for_limit(bad, total, limit, alpha)
            more = f", need ~{needed} more canary requests" if needed else ""
            reason = f"{head} ({sample}): cannot tell from {limit_text} yet{more}"
            cause = INSUFFICIENT_TRAFFIC
        outcomes.append((verdict, reason, cause))
        if sequential:
            primary = _share_of(counts, "primary")
            evidence = models.Evidence(
                metric=metric.name,
                window=counts.window,
                canary_bad=bad,
                canary_requests=total,
                primary_bad=primary[0] if primary else None,
                primary_requests=primary[1] if primary else None,
                p_value=round(test.p_value, 6),
                verdict=verdict,
            )
            reach = (
                significance.detectable_share(total, limit.share, alpha, power=POWER, above=above) if mde else math.nan
            )
            if not math.isnan(reach):
                gap = reach - limit.share
                detectable = f"{what} {'>=' if above else '<='} {_pct(reach)} ({limit_text} {_pp(gap)})"
    if not outcomes:
        return _Limited(_Part(models.Verdict.INCONCLUSIVE, f"{metric.name}: no request counts", NO_DATA))
    recent = _share_of(limit.recent, "canary") if limit.recent is not None else None
    # Old evidence may condemn a canary that went silent, never clear it.
    if limit.recent is not None and not (recent or (0.0, 0.0))[1]:
        outcomes = [o for o in outcomes if o[0] is not models.Verdict.PASS] or outcomes
    ranked = sorted(
        outcomes,
        key=lambda o: (
            o[0] is not models.Verdict.FAIL,
            o[2] != PRIMARY_BREACHES,
            o[0] is not models.Verdict.PASS,
            o[2] == INSUFFICIENT_TRAFFIC,  # a problem reading the counts says more than "too few"
        ),
    )
    verdict, reason, cause = ranked[0]
    if verdict is models.Verdict.INCONCLUSIVE and cause == INSUFFICIENT_TRAFFIC and len(outcomes) > 1:
        # What is missing, exactly: for this window's check, and for the evidence since the start.
        # At the first check "since the start" is the window itself: one reason, not the same one twice.
        reason = "; ".join(dict.fromkeys(o[1] for o in outcomes if o[2] == INSUFFICIENT_TRAFFIC))
    return _Limited(_Part(verdict, reason + note, cause), evidence, detectable, min(p_values, default=None))


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


def _compared(
    readings: MetricReadings, tighten: float
) -> tuple[_Part, significance.Comparison | None, significance.Comparison | None]:
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
        return _Part(models.Verdict.INCONCLUSIVE, f"{metric.name}: no request counts to compare", NO_DATA), None, None
    confidence = 1 - (1 - metric.confidence) / len(windows)
    judged = [_compare_counts(metric, counts, tighten, confidence, sequential) for counts, sequential in windows]
    since = judged[-1][1] if windows[-1][1] else None
    note = f"; {readings.note}" if readings.note else ""
    for part, result in judged:
        if part.verdict is models.Verdict.FAIL:
            return _Part(part.verdict, part.reason + note), result, since
    if readings.recent is not None and not readings.recent.canary_total.value:
        # Old evidence may condemn a canary that went silent, never clear it.
        reason = f"{metric.name}: no canary requests in the last {readings.recent.window}"
        return _Part(models.Verdict.INCONCLUSIVE, reason, INSUFFICIENT_TRAFFIC), judged[0][1], since
    for part, result in judged:
        if part.verdict is models.Verdict.PASS:
            return _Part(part.verdict, part.reason + note), result, since
    part, result = judged[-1]
    return part, result, since


def _combine(parts: list[_Part]) -> _Part:
    for wanted in (models.Verdict.FAIL, models.Verdict.INCONCLUSIVE):
        chosen = [p for p in parts if p.verdict is wanted]
        if chosen:
            return _Part(wanted, "; ".join(p.reason for p in chosen), next((p.cause for p in chosen if p.cause), None))
    return _Part(models.Verdict.PASS, "; ".join(p.reason for p in parts))


def _judge_metric(
    readings: MetricReadings, analysis: models.Analysis, measurements: Measurements, tighten: float, mde: bool = False
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
    evidence: list[models.Evidence] = []
    detectable: list[str] = []
    limit_p: list[float] = []
    if readings.limits:
        for limit in readings.limits:
            limited = _limited(readings, analysis, unit, tighten, limit, mde)
            parts.append(limited.part)
            limit_p.extend([limited.p_value] if limited.p_value is not None else [])
            evidence.extend([limited.evidence] if limited.evidence else [])
            detectable.extend([limited.detectable] if limited.detectable else [])
        record.update(statistic="share against the limit: exact test, and always-valid since the start")
    elif metric.max is not None or metric.min is not None:
        parts.append(_absolute(readings, analysis, n, measurements.window, unit, tighten))
    if metric.compare is not None:
        part, comparison, since = _compared(readings, tighten)
        parts.append(part)
        if comparison is not None:
            record.update(
                statistic=f"two proportions: {comparison.method}",
                p_value=round(comparison.p_value, 6),
                bound=f"{_pp(comparison.lower)}..{_pp(comparison.upper)} over tolerance",
                needed_requests=comparison.needed or None,
            )
        if since is not None and readings.since_start is not None:
            evidence.append(_compared_evidence(readings.since_start, since, metric.name))
            if since.verdict is not models.Verdict.FAIL:
                reach = since.allowed + (since.upper - since.lower)  # conservative: the whole width again
                gap = reach - (0.0 if math.isnan(since.primary_share) else since.primary_share)
                detectable.append(f"{readings.since_start.what or metric.name} primary {_pp(gap)} or more")
    if evidence:
        # The most damning evidence stands for the metric (the smallest always-valid p).
        record.update(evidence=min(evidence, key=lambda e: e.p_value))
    if detectable:
        record.update(detectable="; ".join(detectable))
    outcome = _combine(parts)
    if record.get("p_value") is None and limit_p:
        record.update(p_value=round(min(limit_p), 6))
    return models.MetricResult(verdict=outcome.verdict, reason=outcome.reason, **record), outcome.cause


def _compared_evidence(counts: Counts, result: significance.Comparison, metric: str) -> models.Evidence:
    return models.Evidence(
        metric=metric,
        window=counts.window,
        canary_bad=counts.canary_bad.value or 0.0,
        canary_requests=counts.canary_total.value or 0.0,
        primary_bad=counts.primary_bad.value,
        primary_requests=counts.primary_total.value,
        p_value=round(result.p_value, 6),
        verdict=result.verdict,
    )


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
    mde: bool = True,
) -> models.CheckRecord:
    """The check's record; ``tighten`` (<= 1) scales every limit when the error budget runs low.

    ``mde``: on a check the pass rule clears, state the regression its evidence would have caught
    (the benchmark, which needs only the verdicts, skips that arithmetic).
    """
    results: list[models.MetricResult] = []
    causes: list[str | None] = []
    for readings in measurements.metrics:
        result, cause = _judge_metric(readings, analysis, measurements, tighten)
        results.append(result)
        causes.append(cause)
    burn = _burn(slo, measurements) if slo is not None else None
    cleared = _cleared(analysis, measurements, results, causes, tighten)
    if cleared and burn is not None and burn[0].verdict is not models.Verdict.PASS:
        # The error budget is judged like a metric: burning, or not read, it holds the step (no data never passes).
        cleared = False
    if cleared and mde:
        # What a promotion on this evidence could have missed: worked out only when it may promote.
        # Only a max/min on counts has a detectable effect to add (``_limited``); the others stand as judged.
        results = [
            _judge_metric(r, analysis, measurements, tighten, mde=True)[0] if r.limits else result
            for r, result in zip(measurements.metrics, results, strict=True)
        ]
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
        cleared=cleared,
        detectable=_detectable(results) if cleared else None,
    )


def _cleared(
    analysis: models.Analysis,
    measurements: Measurements,
    results: list[models.MetricResult],
    causes: list[str | None],
    tighten: float,
) -> bool | None:
    """Pass rule ``no-harm``: may the step advance on this check? None under the ``proven`` rule.

    Yes when nothing failed, every metric either passed or is short of traffic only (never a
    Prometheus problem: no data never passes) with its evidence since the start not showing harm,
    and the canary served at least ``minRequests`` at this step. A metric whose value in the window is past
    its fixed max or min holds the step, significant or not: "no harm shown" beside an error rate of
    3.7% against a 1% limit is not what anyone reading the Event would accept.
    """
    if analysis.pass_rule != "no-harm":
        return None
    step = measurements.step_requests
    if step is None or step.value is None or step.value < max(analysis.min_requests, 1):
        return False
    for readings, result, cause in zip(measurements.metrics, results, causes, strict=True):
        if result.verdict is models.Verdict.PASS:
            continue
        harmless = (
            result.verdict is models.Verdict.INCONCLUSIVE
            and cause == INSUFFICIENT_TRAFFIC
            and result.evidence is not None
            and result.evidence.verdict is not models.Verdict.FAIL
            and not _looks_beyond(readings.metric, result.canary, tighten)
        )
        if not harmless:
            return False
    return True


def _looks_beyond(metric: models.Metric, value: float | None, tighten: float) -> bool:
    """The canary's value in the window is past the metric's fixed max or min (as measured, not as proven)."""
    if value is None or math.isnan(value):
        return False
    return (metric.max is not None and value > metric.max * tighten) or (
        metric.min is not None and value < metric.min / tighten
    )


def _detectable(results: list[models.MetricResult]) -> str:
    """The minimum detectable effect of the evidence a promotion rests on, in a sentence."""
    served = max((r.evidence.canary_requests for r in results if r.evidence is not None), default=0.0)
    parts = [r.detectable or f"{r.name}: nothing measurable yet" for r in results if r.evidence is not None]
    if not parts:
        return "no evidence on counts"
    return (
        f"after {round(served)} canary requests; a canary with {' or '.join(parts)} would have been caught"
        f" with {POWER:.0%} probability"
    )


def continuous(analysis: models.Analysis, measurements: Measurements, *, tighten: float = 1.0) -> models.EvidenceRecord:
    """The continuous analysis between checks: the always-valid tests on the counts since the canary started.

    ``measurements`` carry only the counts since the start (``since_start`` and the limits'
    ``since_start``). Fail when any metric's evidence shows the canary beyond its limit or tolerance
    (not a shared incident): the rollout rolls back at once.
    """
    found: list[models.Evidence] = []
    failed: list[str] = []
    for readings in measurements.metrics:
        result, _ = _judge_metric(readings, analysis, measurements, tighten)
        if result.evidence is None:
            continue
        found.append(result.evidence)
        if result.evidence.verdict is models.Verdict.FAIL:
            failed.append(result.reason)
    if failed:
        verdict, reason = models.Verdict.FAIL, "; ".join(failed)
    elif found:
        worst = min(found, key=lambda e: e.p_value)
        verdict, reason = models.Verdict.PASS, f"no evidence of harm (smallest always-valid p={worst.p_value:.3g})"
    else:
        verdict, reason = models.Verdict.INCONCLUSIVE, "no counts since the canary started"
    return models.EvidenceRecord(at=measurements.at.isoformat(), verdict=verdict, reason=reason, metrics=found)


def evidence_failed(check: models.CheckRecord) -> list[models.MetricResult]:
    """The metrics whose always-valid evidence since the start fails: a rollback whatever failureThreshold says."""
    return [r for r in check.metrics if r.evidence is not None and r.evidence.verdict is models.Verdict.FAIL]
