"""Is the canary worse than the primary? A test on request counts, with honest sample sizes.

Both questions the judge asks of a comparison come down to proportions of
"bad" requests: 5xx responses, or requests slower than a latency bound. The
canary may exceed the primary by a tolerance: ``allowed = ratio x p_primary +
increase``. We estimate the excess ``d = p_canary - allowed`` and a two-sided
confidence interval around it with the Agresti-Caffo adjustment (add one bad
and one good request to each arm), which stays honest with zero errors and
small counts, where the plain Wald interval claims certainty it does not have:

- the whole interval above 0: the canary is worse than tolerated -> fail; the
  chance of that when the canary is in fact within tolerance is at most
  ``1 - confidence`` (the false-rollback rate asked for);
- the whole interval below 0: the canary is within tolerance -> pass;
- otherwise: inconclusive, with the number of further canary requests that
  would settle it (at 80% power) if the estimate holds.

Pure functions, standard library only.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

from canary_operator import models

POWER = 0.8
_NORMAL = statistics.NormalDist()


@dataclasses.dataclass(frozen=True)
class Comparison:
    verdict: models.Verdict
    canary_share: float  # observed share of bad canary requests (0..1)
    primary_share: float
    allowed: float  # the share the canary may have given the primary's
    lower: float  # confidence interval of the excess (canary share - allowed)
    upper: float
    p_value: float  # probability of an excess this large if the canary were exactly at the allowed share
    needed: int  # further canary requests that would settle an inconclusive comparison (0 otherwise)


def _smoothed(bad: float, total: float) -> tuple[float, float]:
    return (bad + 1) / (total + 2), total + 2


def compare(
    canary_bad: float,
    canary_total: float,
    primary_bad: float,
    primary_total: float,
    *,
    increase: float = 0.0,
    ratio: float = 1.0,
    confidence: float = 0.99,
    sequential: bool = False,
) -> Comparison:
    """Compare bad-request shares; ``increase`` is a share (0.005 for half a percentage point).

    ``sequential=False``: a fixed-sample interval, right for one window judged once.
    ``sequential=True``: an always-valid interval (a confidence sequence from a normal-mixture
    sequential probability ratio test), right for counts that keep growing and are looked at
    every check: the chance that *any* look fails a canary within tolerance stays at most
    ``1 - confidence``, however many looks there are. It is wider than the fixed interval, and
    narrows as requests accumulate, so a low-traffic canary reaches a verdict in time.
    """
    canary_bad = min(max(canary_bad, 0.0), canary_total)
    primary_bad = min(max(primary_bad, 0.0), primary_total)
    pc, nc = _smoothed(canary_bad, canary_total)
    pp, np_ = _smoothed(primary_bad, primary_total)
    excess = pc - (ratio * pp + increase)
    se = math.sqrt(pc * (1 - pc) / nc + ratio**2 * pp * (1 - pp) / np_)
    alpha = 1 - confidence
    mixing = max(increase + (ratio - 1) * pp, 0.001)  # the size of effect the test is tuned to
    if sequential:
        half = _sequence_half_width(se**2, mixing**2, alpha)
        p_value = _always_valid_p(excess, se**2, mixing**2) if excess > 0 else 1.0
    else:
        half = _NORMAL.inv_cdf(confidence) * se
        p_value = 1 - _NORMAL.cdf(excess / se)
    lower, upper = excess - half, excess + half
    if lower > 0:
        verdict = models.Verdict.FAIL
    elif upper < 0:
        verdict = models.Verdict.PASS
    else:
        verdict = models.Verdict.INCONCLUSIVE
    needed = 0
    if verdict is models.Verdict.INCONCLUSIVE:
        z = half / se  # the interval's width in standard errors, for the sample-size estimate
        needed = _more_requests_needed(excess, se, canary_total, primary_total, increase, ratio, pp, z)
    return Comparison(
        verdict=verdict,
        canary_share=canary_bad / canary_total if canary_total else math.nan,
        primary_share=primary_bad / primary_total if primary_total else math.nan,
        allowed=ratio * (primary_bad / primary_total if primary_total else 0.0) + increase,
        lower=lower,
        upper=upper,
        p_value=p_value,
        needed=needed,
    )


def _sequence_half_width(variance: float, mixing: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence (Robbins; Johari et al. 2017, always-valid inference)."""
    return math.sqrt(
        variance * (variance + mixing) / mixing * (2 * math.log(1 / alpha) + math.log((variance + mixing) / variance))
    )


def _always_valid_p(excess: float, variance: float, mixing: float) -> float:
    """1 / the mixture likelihood ratio: a p-value that stays valid under continuous monitoring."""
    log_ratio = 0.5 * math.log(variance / (variance + mixing)) + mixing * excess**2 / (
        2 * variance * (variance + mixing)
    )
    return min(1.0, math.exp(-log_ratio))


def _more_requests_needed(
    excess: float,
    se: float,
    canary_total: float,
    primary_total: float,
    increase: float,
    ratio: float,
    pp: float,
    z: float,
) -> int:
    """Canary requests to add (the traffic split unchanged) for the interval to clear 0 with 80% power.

    The effect to resolve is the observed excess, but never less than a quarter of the tolerance: an
    estimate sitting right at the limit would otherwise ask for millions of requests.
    """
    margin = increase + (ratio - 1) * pp
    effect = max(abs(excess), margin / 4, 1e-6)
    target_se = effect / (z + _NORMAL.inv_cdf(POWER))
    if canary_total < 1 or primary_total < 1:
        # No basis to scale from: the design formula for a canary like the primary.
        p = max(pp, 0.001)
        split = canary_total / primary_total if primary_total >= 1 else 1.0
        per_request = p * (1 - p) * (1 + ratio**2 * max(split, 0.01))
        return max(1, math.ceil(per_request / target_se**2 - canary_total))
    scale = (se / target_se) ** 2  # both arms grow by this factor
    return max(1, math.ceil(canary_total * (scale - 1)))


def quantile_from_buckets(buckets: dict[float, float], quantile: float) -> tuple[float, float, float] | None:
    """The quantile of a cumulative histogram, as histogram_quantile computes it, with its bucket.

    Returns (value, bucket lower bound, bucket upper bound) in the buckets' unit, or None without data.
    Like Prometheus, it interpolates linearly inside the bucket; a quantile in the +Inf bucket is
    reported as the highest finite bound.
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = quantile * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound, lower_bound, bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (bound - lower_bound) * share, lower_bound, bound
        lower_bound, lower_count = bound, count
    return None


def count_above(buckets: dict[float, float], bound: float) -> tuple[float, float]:
    """(requests slower than the bucket bound nearest above ``bound``, that bucket bound)."""
    finite = sorted(b for b in buckets if not math.isinf(b))
    total = buckets.get(math.inf, max(buckets.values(), default=0.0))
    at_or_above = [b for b in finite if b >= bound - 1e-12]
    if not at_or_above:
        return 0.0, math.inf
    edge = at_or_above[0]
    return max(total - buckets[edge], 0.0), edge
