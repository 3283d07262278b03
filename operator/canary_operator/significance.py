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

The interval is a normal approximation. With few bad requests expected (a
canary of a few hundred requests and an error rate under a few percent) the
counts are far too skewed for it: it is then too timid to fail a canary whose
errors plainly stand out. For one window with fewer than ``EXACT_BELOW`` bad
canary requests expected at the tolerance, the "worse than tolerated" question
is answered exactly instead: the p-value is the probability, with both arms'
shares at their most likely values *on the tolerance boundary* (the
constrained maximum-likelihood estimate), of a canary-minus-allowed difference
at least as large as the one observed, summed over the binomial distributions
of both arms. This keeps the false-fail rate at the boundary near ``1 -
confidence`` (a test simulates it) while catching a 5-in-300 canary against a
0.1% primary that the interval would call inconclusive.

Pure functions, standard library only.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics

from canary_operator import models

POWER = 0.8
EXACT_BELOW = 25.0  # bad canary requests expected at the tolerance: below this, the fixed window is tested exactly
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
    method: str  # how "worse than tolerated" was decided


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
    exact = None
    if sequential:
        method = "always-valid confidence sequence"
        half = _sequence_half_width(se**2, mixing**2, alpha)
        p_value = _always_valid_p(excess, se**2, mixing**2) if excess > 0 else 1.0
    else:
        method = "Agresti-Caffo interval"
        half = _NORMAL.inv_cdf(confidence) * se
        p_value = 1 - _NORMAL.cdf(excess / se)
        exact = _exact_p_value(canary_bad, canary_total, primary_bad, primary_total, increase, ratio)
        if exact is not None:
            method = "exact test at the tolerance boundary"
            p_value = exact
    lower, upper = excess - half, excess + half
    worse = exact <= alpha if exact is not None else lower > 0
    if worse:
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
        method=method,
    )


def _null_shares(
    canary_bad: int, canary_total: int, primary_bad: int, primary_total: int, increase: float, ratio: float
) -> tuple[float, float]:
    """The most likely (canary, primary) shares with the canary exactly at ``ratio x primary + increase``.

    The log-likelihood along that line is concave in the primary's share: bisect on its slope.
    """

    def slope(pp: float) -> float:
        pc = ratio * pp + increase
        canary = (canary_bad / pc if canary_bad else 0.0) - (
            (canary_total - canary_bad) / (1 - pc) if canary_total > canary_bad else 0.0
        )
        primary = (primary_bad / pp if primary_bad else 0.0) - (
            (primary_total - primary_bad) / (1 - pp) if primary_total > primary_bad else 0.0
        )
        return ratio * canary + primary

    low, high = 1e-12, min(1.0, (1 - increase) / ratio) - 1e-12
    for _ in range(60):
        middle = (low + high) / 2
        if slope(middle) > 0:
            low = middle
        else:
            high = middle
    pp = (low + high) / 2
    return ratio * pp + increase, pp


def _binomial_survival(n: int, p: float, upto: int) -> list[float]:
    """P(X >= k) for k = 0..upto+1, X ~ Binomial(n, p), by the pmf's recurrence."""
    pmf = [0.0] * (upto + 1)
    pmf[0] = (1 - p) ** n
    odds = p / (1 - p)
    for k in range(upto):
        pmf[k + 1] = pmf[k] * (n - k) / (k + 1) * odds
    survival = [0.0] * (upto + 2)
    for k in range(upto, -1, -1):
        survival[k] = survival[k + 1] + pmf[k]
    return survival


def _binomial_points(n: int, p: float) -> list[tuple[float, float]]:
    """(count, weight) points standing for Binomial(n, p): its pmf, or a fine normal grid when it is wide."""
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    if sd > 5:
        grid = [max(mean + sd * i / 4, 0.0) for i in range(-28, 29)]
        weights = [_NORMAL.pdf(i / 4) for i in range(-28, 29)]
        scale = sum(weights)
        return [(k, w / scale) for k, w in zip(grid, weights, strict=True)]
    top = min(n, math.ceil(mean + 12 * sd + 20))
    survival = _binomial_survival(n, p, top)
    return [(float(k), survival[k] - survival[k + 1]) for k in range(top + 1)]


def _exact_p_value(
    canary_bad: float, canary_total: float, primary_bad: float, primary_total: float, increase: float, ratio: float
) -> float | None:
    """P(a canary-minus-allowed difference at least as large as observed), on the tolerance boundary.

    None when the normal interval is good enough (many bad requests expected) or an arm is empty.
    """
    nc, np_ = round(canary_total), round(primary_total)
    if nc < 1 or np_ < 1 or increase >= 1:
        return None
    xc, xp = min(round(canary_bad), nc), min(round(primary_bad), np_)
    pc, pp = _null_shares(xc, nc, xp, np_, increase, ratio)
    if nc * pc >= EXACT_BELOW or pc >= 0.5:
        return None
    observed = xc / nc - ratio * xp / np_
    top = min(nc, math.ceil(nc * pc + 12 * math.sqrt(nc * pc) + 20))
    survival = _binomial_survival(nc, pc, top)
    total = 0.0
    for count, weight in _binomial_points(np_, pp):
        need = math.ceil(nc * (observed + ratio * count / np_) - 1e-9)  # canary bad requests that reach it
        total += weight * (1.0 if need <= 0 else survival[need] if need <= top else 0.0)
    return min(1.0, total)


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


def tail_counts(
    canary: dict[float, float], primary: dict[float, float], bound: float | None
) -> tuple[float, float, float] | None:
    """(canary requests slower than the edge, primary's, the edge) for a latency comparison.

    ``bound`` in the buckets' unit; None compares against the primary's own p99: the edge is the
    bucket bound at or above the p99 of the primary's histogram over the same window, so the
    question becomes "does the canary have more requests slower than what is slow for the
    primary?", which catches a canary that got slower without crossing any fixed line. None when
    the primary has no requests to take a p99 from.
    """
    if bound is None:
        found = quantile_from_buckets(primary, 0.99)
        if found is None:
            return None
        bound = found[0]
    canary_bad, edge = count_above(canary, bound)
    primary_bad, _ = count_above(primary, bound)
    return canary_bad, primary_bad, edge


# ---------------------------------------------------------------- a share against a fixed limit
#
# ``max: 1`` on an error rate means "a canary whose true error rate is above 1% fails", and a p99
# limit means the same of the share of requests slower than it (p99 > 500 ms exactly when more than
# 1% of requests are slower than 500 ms). So a fixed limit is a one-sample test of a proportion: fail
# when the counts show the share over the limit, pass when they show it under, inconclusive between.


@dataclasses.dataclass(frozen=True)
class LimitTest:
    verdict: models.Verdict
    share: float  # observed share of bad requests (0..1), NaN without requests
    limit: float  # the share the canary may not exceed (``above=True``) or fall below
    p_value: float  # of "within the limit": small when the canary is shown beyond it
    p_within: float  # of "beyond the limit": small when the canary is shown within it
    method: str


def _log_binomial_pmf(n: int, p: float, k: int) -> float:
    if p <= 0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1:
        return 0.0 if k == n else -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


def binomial_tail(n: int, p: float, k: int, *, upper: bool = True) -> float:
    """P(X >= k) (``upper``) or P(X <= k) for X ~ Binomial(n, p), summed from k outward in log space.

    The terms fall away from the mode geometrically, so summing outward from ``k`` until they stop
    mattering is exact to double precision and costs a few standard deviations' worth of terms.
    """
    if upper and k <= 0 or not upper and k >= n:
        return 1.0
    if upper and k > n or not upper and k < 0:
        return 0.0
    mode = (n + 1) * p
    # Sum the smaller side directly; the other side is 1 minus it.
    if upper and k < mode:
        return max(0.0, 1.0 - binomial_tail(n, p, k - 1, upper=False))
    if not upper and k > mode:
        return max(0.0, 1.0 - binomial_tail(n, p, k + 1, upper=True))
    log_first = _log_binomial_pmf(n, p, k)
    if log_first == -math.inf:
        return 0.0
    odds = p / (1 - p) if p < 1 else math.inf
    term, total, j = 1.0, 1.0, k
    while True:
        if upper:
            if j >= n:
                break
            term *= (n - j) / (j + 1) * odds
            j += 1
        else:
            if j <= 0:
                break
            term *= j / ((n - j + 1) * odds)
            j -= 1
        total += term
        if term < 1e-17 * total:
            break
    return min(1.0, math.exp(log_first + math.log(total)))


# The alternatives an always-valid test mixes over, as multiples of the distance to the limit's far
# side: a share 10% beyond the limit up to 30 times it. A grid of fixed alternatives keeps each
# likelihood ratio a test supermartingale under every share within the limit (the ratio of one
# request is linear in the true share), so their average is one too, and Ville's inequality bounds
# the chance it ever reaches 1/alpha by alpha, however often and whenever it is looked at.
_MIXTURE_STEPS = tuple(0.1 * 1.35**i for i in range(20))


@functools.lru_cache(maxsize=256)
def _mixture_terms(limit: float, above: bool) -> tuple[tuple[float, float], ...]:
    """Per alternative, log(alt / limit) and log((1 - alt) / (1 - limit)): what one bad and one good request add."""
    if above:
        alternatives = [a for a in (limit * (1 + step) for step in _MIXTURE_STEPS) if a < 1] or [(1 + limit) / 2]
    else:
        alternatives = [limit / (1 + step) for step in _MIXTURE_STEPS]
    return tuple((math.log(a / limit), math.log1p(-a) - math.log1p(-limit)) for a in alternatives)


def _mixture_log_ratio(bad: int, total: int, limit: float, above: bool) -> float:
    """log of the average likelihood ratio of the alternatives beyond ``limit`` against the limit itself."""
    terms = _mixture_terms(limit, above)
    good = total - bad
    logs = [bad * per_bad + good * per_good for per_bad, per_good in terms]
    top = max(logs)
    return top + math.log(sum(math.exp(x - top) for x in logs) / len(logs))


def always_valid_limit_p(bad: float, total: float, limit: float, *, above: bool = True) -> float:
    """The always-valid p-value of "the share is within ``limit``" (at most it, or at least it when not ``above``).

    1 / the mixture likelihood ratio of the counts since the start. Any policy of looking (every
    scrape, every tick, stopping at the first crossing) fails a canary within the limit at most
    alpha of the time. Sound only for shares strictly inside (0, 1).
    """
    if total < 1 or not 0 < limit < 1:
        return 1.0
    n = round(total)
    x = min(max(round(bad), 0), n)
    log_ratio = _mixture_log_ratio(x, n, limit, above)
    return 1.0 if log_ratio <= 0 else math.exp(-log_ratio)


def against_limit(
    bad: float, total: float, limit: float, *, above: bool = True, confidence: float = 0.99, sequential: bool = False
) -> LimitTest:
    """Is the share of bad requests beyond ``limit`` (above it; below it when not ``above``)?

    ``sequential=False``: exact binomial tails, right for one window judged once. ``sequential=True``:
    the always-valid mixture test on both sides, right for counts since the start looked at again and
    again (``always_valid_limit_p``).
    """
    alpha = 1 - confidence
    n = round(total)
    x = min(max(round(bad), 0), n)
    share = x / n if n else math.nan
    if n < 1 or not 0 < limit < 1:
        return LimitTest(models.Verdict.INCONCLUSIVE, share, limit, 1.0, 1.0, "no requests")
    if sequential:
        method = "always-valid mixture test on the counts since the start"
        p_beyond = always_valid_limit_p(x, n, limit, above=above)
        p_within = always_valid_limit_p(x, n, limit, above=not above)
    else:
        method = "exact binomial test"
        p_beyond = binomial_tail(n, limit, x, upper=above)
        p_within = binomial_tail(n, limit, x, upper=not above)
    if p_beyond <= alpha:
        verdict = models.Verdict.FAIL
    elif p_within <= alpha:
        verdict = models.Verdict.PASS
    else:
        verdict = models.Verdict.INCONCLUSIVE
    return LimitTest(verdict, share, limit, p_beyond, p_within, method)


def detectable_share(total: float, limit: float, alpha: float, *, power: float = 0.9, above: bool = True) -> float:
    """The share beyond ``limit`` that the always-valid test at ``alpha`` catches with ``power`` on ``total`` requests.

    The minimum detectable effect recorded on a promotion: a canary at least this bad would have
    been rolled back (``power`` of the time) by the evidence this promotion rests on. NaN when
    ``total`` requests could not show it even if every one of them were bad.
    """
    n = round(total)
    if n < 1 or not 0 < limit < 1:
        return math.nan
    extreme = n if above else 0
    if always_valid_limit_p(extreme, n, limit, above=above) > alpha:
        return math.nan
    # The count of bad requests from which the test fails: the mixture ratio is monotone in it, and
    # lies between its best alternative's ratio / K and that ratio, which brackets the count closely.
    terms = _mixture_terms(limit, above)
    target = math.log(1 / alpha)

    def count_for(level: float) -> int:
        found = []
        for per_bad, per_good in terms:
            slope = per_bad - per_good  # what turning one good request bad adds to the log ratio
            found.append((level - n * per_good) / slope)  # above: slope > 0; below: slope < 0
        return math.ceil(min(found)) if above else math.floor(max(found))

    surely, maybe = count_for(target + math.log(len(terms))), count_for(target)
    fails = min(max(surely, 0), n)
    holds = max(maybe - 1, -1) if above else min(maybe + 1, n + 1)
    while abs(fails - holds) > 1:
        middle = (fails + holds) // 2
        if always_valid_limit_p(middle, n, limit, above=above) <= alpha:
            fails = middle
        else:
            holds = middle
    # The share at which that count is reached with ``power``: the tail is monotone in the share.
    if n * min(limit, 1 - limit) >= 20:
        return _normal_share(n, fails, power, above)
    lo, hi = (limit, 1.0) if above else (0.0, limit)
    for _ in range(20):
        share = (lo + hi) / 2
        caught = binomial_tail(n, share, fails, upper=above) >= power
        if above:
            lo, hi = (lo, share) if caught else (share, hi)
        else:
            lo, hi = (share, hi) if caught else (lo, share)
    return hi if above else lo


def requests_to_show(share: float, limit: float, alpha: float, *, above: bool = True) -> float | None:
    """About how many requests the always-valid test needs to show a canary at ``share`` beyond ``limit``.

    Enough for the best single alternative to reach 1/alpha with the mixture's 1/K discount, at the
    expected count of bad requests: a slight overestimate, for the "need ~N more" of a verdict. None
    when ``share`` is not beyond the limit.
    """
    terms = _mixture_terms(limit, above)
    drift = max(share * per_bad + (1 - share) * per_good for per_bad, per_good in terms)
    if drift <= 0:
        return None
    return math.log(len(terms) / alpha) / drift


def _normal_share(n: int, count: int, power: float, above: bool) -> float:
    """The share p with P(X >= count) = power (or P(X <= count) when not ``above``), X ~ Binomial(n, p).

    Normal approximation with continuity correction, for samples large enough that it is exact to a
    fraction of a percent: solves (count -+ 0.5 - n p)^2 = z^2 n p (1 - p) for the root on the right side.
    """
    z = _NORMAL.inv_cdf(power)
    c = count - 0.5 if above else count + 0.5
    # n^2 p^2 - 2 c n p + c^2 = z^2 n p - z^2 n p^2  ->  (n^2 + z^2 n) p^2 - (2 c n + z^2 n) p + c^2 = 0
    a, b, k = n * n + z * z * n, -(2 * c * n + z * z * n), c * c
    root = math.sqrt(max(b * b - 4 * a * k, 0.0))
    return (-b + root) / (2 * a) if above else (-b - root) / (2 * a)


# ---------------------------------------------------------------- always-valid comparison of two arms
#
# Lindon, Sanden, Shirikian (KDD 2022): model each arm's bad requests as a Poisson process with a rate
# per request served. Given that a bad request happened, it came from the canary with probability
# ``theta = n_c * psi / (n_c * psi + n_p)``, where n_c / n_p are the requests each arm served in that
# stretch and ``psi`` the ratio of the canary's rate of bad requests to the primary's. So the canary's
# share of the bad requests of each stretch is binomial in psi alone, whatever the primary's own
# rate does (incidents, daily cycles): the nuisance is conditioned away. A mixture over psi > psi0 of
# these likelihood ratios is a test supermartingale when the canary's ratio is at most psi0.


_RATIO_STEPS = tuple(1.1 * 1.3**i for i in range(20))  # psi / psi0 of the alternatives


@dataclasses.dataclass
class RatioEvidence:
    """The running log likelihood ratios of the alternatives, fed one stretch of counts at a time."""

    psi0: float = 1.0
    logs: list[float] = dataclasses.field(default_factory=lambda: [0.0] * len(_RATIO_STEPS))

    def add(self, canary_bad: float, canary_total: float, primary_bad: float, primary_total: float) -> None:
        xc, xp = round(canary_bad), round(primary_bad)
        if xc + xp == 0 or canary_total <= 0 or primary_total <= 0:
            return  # no bad request in the stretch: nothing to attribute
        theta0 = canary_total * self.psi0 / (canary_total * self.psi0 + primary_total)
        for i, step in enumerate(_RATIO_STEPS):
            psi = self.psi0 * step
            theta = canary_total * psi / (canary_total * psi + primary_total)
            self.logs[i] += xc * math.log(theta / theta0) + xp * math.log((1 - theta) / (1 - theta0))

    @property
    def p_value(self) -> float:
        top = max(self.logs)
        log_mean = top + math.log(sum(math.exp(x - top) for x in self.logs) / len(self.logs))
        return 1.0 if log_mean <= 0 else math.exp(-log_mean)


def always_valid_ratio_p(
    canary_bad: float, canary_total: float, primary_bad: float, primary_total: float, *, ratio: float = 1.0
) -> float:
    """Always-valid p-value of "the canary's rate of bad requests is at most ``ratio`` x the primary's".

    All the counts as one stretch (the split of traffic taken as constant over it).
    """
    evidence = RatioEvidence(psi0=ratio)
    evidence.add(canary_bad, canary_total, primary_bad, primary_total)
    return evidence.p_value
