"""The peers' decision rules, replayed on a trace: Flagger, Argo Rollouts, Kayenta.

Each rule answers one question, ``rollback_at(trace)``: the interval (0-based) whose check
decides the rollback, or None if the canary survives the horizon. They are written from what the
team's notes on the peers (peers.md) record of each code base, checked against the code where a detail
mattered (docs/judge-benchmark.md cites each fact), with the metrics each one's documentation shows: the canary's
error rate (at most 1%) and its p99 from the latency histogram (at most 500 ms); Kayenta compares the
canary's per-interval values with the primary's instead of holding them to a limit.

What a query returns when the canary answered no request in the window matters a great deal at low
traffic, so it is modelled as Prometheus answers it: a ratio of two zero rates is NaN, and a series
that never existed is an empty result.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from canary_bench.benchmarks import corpus

ERROR_LIMIT_PERCENT = 1.0
P99_LIMIT_MS = 500.0


class Rule(Protocol):
    @property
    def name(self) -> str: ...

    def rollback_at(self, trace: corpus.Trace) -> int | None: ...


# ---------------------------------------------------------------- Flagger


@dataclasses.dataclass(frozen=True)
class Flagger:
    """Absolute limits per check; a counter of failed checks that is never reset; rollback at the threshold.

    The metrics are checked in order and the first failure ends the check, so a check adds at most one
    to ``failedChecks``. NaN (no requests in the window) is a failed check (Flagger's Prometheus provider
    reports it as "no values found"). The real scheduler compares ``failedChecks`` with the threshold at the
    start of the *next* tick; here the rollback is put at the check that reached the threshold, the same
    moment the other rules are credited with.
    """

    threshold: int = 1
    max_error_percent: float = ERROR_LIMIT_PERCENT
    max_p99_ms: float = P99_LIMIT_MS

    @property
    def name(self) -> str:
        return f"Flagger t={self.threshold}"

    def check(self, interval: corpus.Interval) -> bool:
        """True when every metric is within its thresholdRange."""
        canary = interval.canary
        for value, limit in ((canary.error_percent, self.max_error_percent), (canary.p99_ms, self.max_p99_ms)):
            if math.isnan(value) or value > limit:
                return False
        return True

    def rollback_at(self, trace: corpus.Trace) -> int | None:
        failed = 0
        for t, interval in enumerate(trace.intervals):
            if not self.check(interval):
                failed += 1
                if failed >= self.threshold:
                    return t
        return None


# ---------------------------------------------------------------- Argo Rollouts

SUCCESSFUL, FAILED, ERROR = "Successful", "Failed", "Error"


@dataclasses.dataclass(frozen=True)
class ArgoRollouts:
    """One measurement per metric and interval against a ``successCondition``; limits on the totals.

    The metrics are the documented ones: success rate ``result[0] >= 0.99`` and p99 ``result[0] <= 500``.
    A metric fails the run when its failed measurements exceed ``failureLimit`` (a total, never reset;
    with the default 0 the first failure aborts) or its consecutive errors exceed
    ``consecutiveErrorLimit`` (4). Without a failureCondition a measurement whose successCondition is
    false is Failed, so there is no Inconclusive measurement and ``inconclusiveLimit`` never applies.
    NaN (requests before, none in this window) makes the condition false: Failed. An empty result (the
    canary never answered, so its series do not exist yet) cannot be indexed: Error.
    """

    failure_limit: int = 0
    consecutive_error_limit: int = 4
    min_success_rate: float = 1 - ERROR_LIMIT_PERCENT / 100
    max_p99_ms: float = P99_LIMIT_MS

    @property
    def name(self) -> str:
        return f"Argo fl={self.failure_limit}"

    def measure(self, interval: corpus.Interval, served_before: bool) -> tuple[str, str]:
        """The phases of the (success-rate, p99) measurements of one interval."""
        canary = interval.canary
        if canary.requests == 0 and not served_before:
            return ERROR, ERROR
        success = 1 - canary.errors / canary.requests if canary.requests else math.nan
        p99 = canary.p99_ms
        return (
            SUCCESSFUL if success >= self.min_success_rate else FAILED,  # NaN compares false
            SUCCESSFUL if p99 <= self.max_p99_ms else FAILED,
        )

    def rollback_at(self, trace: corpus.Trace) -> int | None:
        failed = [0, 0]
        errors = [0, 0]
        served = False
        for t, interval in enumerate(trace.intervals):
            phases = self.measure(interval, served)
            served = served or interval.canary.requests > 0
            for i, phase in enumerate(phases):
                failed[i] += phase == FAILED
                errors[i] = errors[i] + 1 if phase == ERROR else 0
            if max(failed) > self.failure_limit or max(errors) > self.consecutive_error_limit:
                return t
        return None


# ---------------------------------------------------------------- Kayenta

HIGH, LOW, PASS, NODATA = "High", "Low", "Pass", "Nodata"


@dataclasses.dataclass(frozen=True)
class ShiftInterval:
    lower: float
    upper: float
    estimate: float


def _tie_term(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    return float(np.sum(counts.astype(float) ** 3 - counts))


def shift_interval(experiment: Sequence[float], control: Sequence[float], confidence: float) -> ShiftInterval:
    """Confidence interval of the shift experiment - control, by inverting the rank-sum test.

    The asymptotic construction of R's ``wilcox.test(conf.int=TRUE, correct=TRUE)`` that Kayenta ports:
    the ends are where the continuity-corrected, tie-corrected z statistic of ``experiment - mu`` against
    ``control`` crosses the two-sided normal quantile. That statistic is a step function of ``mu`` that
    only jumps at the pairwise differences, so the crossings are found among those exactly instead of by a
    root finder (Kayenta's Brent solver lands within 1e-4 of the same jump). The estimate is the
    Hodges-Lehmann shift, the median of the pairwise differences.
    """
    x = np.asarray(experiment, dtype=float)
    y = np.asarray(control, dtype=float)
    nx, ny = len(x), len(y)
    n = nx * ny
    differences = np.sort((x[:, None] - y[None, :]).ravel())
    # Ties inside each sample do not move with mu; ties across the samples only happen exactly at a jump.
    ties = _tie_term(x) + _tie_term(y)
    sigma = math.sqrt(nx * ny / 12 * ((nx + ny + 1) - ties / ((nx + ny) * (nx + ny - 1))))
    if sigma == 0:
        raise ValueError("cannot compute a confidence interval when all observations are tied")
    z = statistics.NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    values, counts = np.unique(differences, return_counts=True)
    above = n - np.cumsum(counts)  # differences above each distinct value: U just right of it

    def f(u: np.ndarray | float, q: float) -> np.ndarray:
        dz = np.asarray(u, dtype=float) - n / 2
        return (dz - 0.5 * np.sign(dz)) / sigma - q

    def root(q: float) -> float:
        at_min = n - counts[0] / 2  # U at mu = min difference: the ties there count half
        at_max = counts[-1] / 2
        if f(at_min, q) <= 0:
            return float(values[0])
        if f(at_max, q) >= 0:
            return float(values[-1])
        return float(values[np.argmax(f(above, q) <= 0)])

    middle = (n - 1) / 2  # the differences are sorted: their median is the middle one (or two)
    estimate = float((differences[math.floor(middle)] + differences[math.ceil(middle)]) / 2)
    return ShiftInterval(lower=root(z), upper=root(-z), estimate=estimate)


def classify(
    experiment: Sequence[float],
    control: Sequence[float],
    *,
    confidence: float = 0.98,
    tolerance: float = 0.25,
    direction: str = "increase",
) -> str:
    """Kayenta's Mann-Whitney classifier for one metric (NaN already removed)."""
    if len(experiment) == 0 or len(control) == 0:
        return NODATA
    if sorted(experiment) == sorted(control) or len(set(experiment) | set(control)) == 1:
        return PASS
    result = shift_interval(experiment, control, confidence)
    bound = tolerance * abs(result.estimate)
    control_mean = statistics.fmean(control)
    ratio = 1.0 if control_mean == 0 else statistics.fmean(experiment) / control_mean
    if direction in ("increase", "either") and result.lower > bound and ratio >= 1.0:
        return HIGH
    if direction in ("decrease", "either") and result.upper < -bound and ratio <= 1.0:
        return LOW
    return PASS


def score(labels: Sequence[str]) -> float:
    """Summary score: each metric its own group of equal weight; Nodata on half the metrics or more is 0."""
    if sum(label == NODATA for label in labels) * 2 >= len(labels):
        return 0.0
    return 100 * sum(label in (PASS, NODATA) for label in labels) / len(labels)


@dataclasses.dataclass(frozen=True)
class Kayenta:
    """Mann-Whitney per metric on the per-interval values so far, judged every ``every`` intervals.

    Confidence 0.98 and tolerance 0.25 are hard-coded in Kayenta's judge. A judgement below the marginal
    score fails the canary at once; the last one must reach the pass score. Direction ``increase``: only a
    canary that is higher (worse) fails; Kayenta's default ``either`` would also fail a canary that is better.
    """

    every: int = 5
    confidence: float = 0.98
    tolerance: float = 0.25
    marginal: float = 75.0
    pass_score: float = 95.0
    direction: str = "increase"

    @property
    def name(self) -> str:
        return "Kayenta"

    @staticmethod
    def points(trace: corpus.Trace) -> list[tuple[list[float], list[float]]]:
        """Per metric, the canary's and the primary's per-interval values (NaN included)."""
        return [
            ([i.canary.error_percent for i in trace.intervals], [i.primary.error_percent for i in trace.intervals]),
            ([i.canary.p99_ms for i in trace.intervals], [i.primary.p99_ms for i in trace.intervals]),
        ]

    def judge(self, series: list[tuple[list[float], list[float]]], upto: int) -> float:
        labels = []
        for canary, primary in series:
            experiment = [v for v in canary[: upto + 1] if not math.isnan(v)]
            control = [v for v in primary[: upto + 1] if not math.isnan(v)]
            labels.append(
                classify(
                    experiment,
                    control,
                    confidence=self.confidence,
                    tolerance=self.tolerance,
                    direction=self.direction,
                )
            )
        return score(labels)

    def rollback_at(self, trace: corpus.Trace) -> int | None:
        series = self.points(trace)
        last = len(trace.intervals) - 1
        judgements: set[int] = {*range(self.every - 1, last + 1, self.every), last}
        for t in sorted(judgements):
            needed = self.pass_score if t == last else self.marginal
            if self.judge(series, t) < needed:
                return t
        return None
