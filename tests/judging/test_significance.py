"""The canary-vs-primary test on request counts, and the histogram helpers."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from canary_operator import models, significance


def test_a_clearly_worse_canary_fails_with_a_tiny_p_value() -> None:
    result = significance.compare(120, 4800, 170, 43000, increase=0.005)  # 2.5% vs 0.4%, tolerance +0.5pp
    assert result.verdict is models.Verdict.FAIL
    assert result.p_value < 0.001 and result.lower > 0


def test_a_canary_like_the_primary_passes_on_enough_requests() -> None:
    result = significance.compare(20, 5000, 190, 45000, increase=0.005)
    assert result.verdict is models.Verdict.PASS
    assert result.upper < 0 and result.needed == 0


def test_no_errors_on_either_arm_passes_only_with_enough_requests() -> None:
    assert significance.compare(0, 30, 0, 270, increase=0.005).verdict is models.Verdict.INCONCLUSIVE
    assert significance.compare(0, 3000, 0, 27000, increase=0.005).verdict is models.Verdict.PASS


def test_an_inconclusive_comparison_says_how_many_more_requests_would_settle_it() -> None:
    small = significance.compare(1, 300, 15, 2700, increase=0.005)  # 0.33% vs 0.56%
    assert small.verdict is models.Verdict.INCONCLUSIVE
    assert small.needed > 300
    # Taking those requests at the same error rates, with the same traffic split, does settle it.
    grown = small.needed + 300
    settled = significance.compare(grown / 300, grown, 15 * grown / 300, 9 * grown, increase=0.005)
    assert settled.verdict is models.Verdict.PASS


@pytest.mark.parametrize("canary_total", [0, 0.0])
def test_an_empty_canary_is_inconclusive_and_asks_for_requests(canary_total: float) -> None:
    result = significance.compare(0, canary_total, 10, 2000, increase=0.005)
    assert result.verdict is models.Verdict.INCONCLUSIVE
    assert result.needed > 0 and math.isnan(result.canary_share)


def test_an_empty_primary_is_inconclusive() -> None:
    assert significance.compare(2, 2000, 0, 0, increase=0.005).verdict is models.Verdict.INCONCLUSIVE


def test_a_ratio_tolerance_scales_with_the_primary() -> None:
    # 3% vs 2%: +1pp is within x2 of the primary, not within +0.5pp.
    assert significance.compare(300, 10000, 1800, 90000, ratio=2.0).verdict is models.Verdict.PASS
    assert significance.compare(300, 10000, 1800, 90000, increase=0.005).verdict is models.Verdict.FAIL


def test_bad_counts_above_the_total_are_clamped() -> None:
    result = significance.compare(12, 10, 0, 1000, increase=0.005)  # increase() extrapolation can overshoot
    assert result.canary_share == 1.0


def test_the_false_rollback_rate_stays_at_or_below_one_minus_confidence() -> None:
    rng = random.Random(7)
    failures = 0
    runs = 2000
    for _ in range(runs):
        n_c, n_p = 500, 4500
        bad_c = sum(rng.random() < 0.01 for _ in range(n_c))
        bad_p = sum(rng.random() < 0.005 for _ in range(n_p))  # canary exactly at primary + 0.5pp
        if significance.compare(bad_c, n_c, bad_p, n_p, increase=0.005, confidence=0.99).verdict is models.Verdict.FAIL:
            failures += 1
    assert failures / runs <= 0.015


def test_quantiles_from_buckets_interpolate_like_histogram_quantile() -> None:
    buckets = {0.1: 90.0, 0.5: 98.0, 1.0: 100.0, math.inf: 100.0}
    value, low, high = significance.quantile_from_buckets(buckets, 0.99) or (0, 0, 0)
    assert (low, high) == (0.5, 1.0) and value == pytest.approx(0.75)
    assert significance.quantile_from_buckets({math.inf: 0.0}, 0.99) is None


def test_requests_slower_than_a_bound_use_the_bucket_at_or_above_it() -> None:
    buckets = {0.25: 900.0, 0.5: 960.0, 1.0: 990.0, math.inf: 1000.0}
    assert significance.count_above(buckets, 0.5) == (40.0, 0.5)
    assert significance.count_above(buckets, 0.3) == (40.0, 0.5)


@pytest.mark.slow  # thousands of simulated rollouts
def test_looking_at_growing_counts_every_check_keeps_false_rollbacks_rare_only_when_sequential() -> None:
    rng = random.Random(11)
    runs, looks, per_look = 300, 20, 200
    any_fail = {False: 0, True: 0}
    for _ in range(runs):
        bad_c = bad_p = total_c = total_p = 0
        failed = {False: False, True: False}
        for _ in range(looks):
            total_c += per_look
            total_p += 9 * per_look
            bad_c += sum(rng.random() < 0.01 for _ in range(per_look))  # exactly at primary + 0.5pp
            bad_p += sum(rng.random() < 0.005 for _ in range(9 * per_look))
            for sequential in (False, True):
                result = significance.compare(bad_c, total_c, bad_p, total_p, increase=0.005, sequential=sequential)
                failed[sequential] |= result.verdict is models.Verdict.FAIL
        for sequential in (False, True):
            any_fail[sequential] += failed[sequential]
    assert any_fail[True] / runs <= 0.01
    assert any_fail[False] > any_fail[True], "a fixed-sample interval looked at 20 times errs more often"


def test_a_few_errors_that_plainly_stand_out_fail_a_small_canary() -> None:
    # 300 canary requests against a 0.1% primary: at the +0.5pp tolerance about 1.8 errors are expected.
    # Seven are a failure at 99%; the normal interval alone would still call it inconclusive.
    seven = significance.compare(7, 300, 3, 2700, increase=0.005)
    assert seven.verdict is models.Verdict.FAIL
    assert seven.method == "exact test at the tolerance boundary"
    assert seven.p_value < 0.005
    assert significance.compare(4, 300, 3, 2700, increase=0.005).verdict is models.Verdict.INCONCLUSIVE


def test_exact_p_values_fall_as_the_canary_fails_more() -> None:
    p_values = [significance.compare(bad, 300, 3, 2700, increase=0.005).p_value for bad in range(0, 15)]
    assert all(later <= earlier for earlier, later in zip(p_values, p_values[1:], strict=False))
    assert p_values[0] > 0.9 and p_values[-1] < 1e-6


def _brute_force_p(canary_bad: int, nc: int, primary_bad: int, np_: int, increase: float) -> float:
    """The exact p-value by definition: grid-searched boundary MLE, then every pair of counts enumerated."""
    best, pp = -math.inf, 0.0
    for step in range(1, 20000):
        p = step / 20000 * (1 - increase)
        pc = p + increase
        loglik = canary_bad * math.log(pc) + (nc - canary_bad) * math.log(1 - pc)
        loglik += (primary_bad * math.log(p) if primary_bad else 0.0) + (np_ - primary_bad) * math.log(1 - p)
        if loglik > best:
            best, pp = loglik, p
    pc = pp + increase
    observed = canary_bad / nc - primary_bad / np_
    total = 0.0

    def pmf(n: int, share: float, k: int) -> float:
        return math.comb(n, k) * share**k * (1 - share) ** (n - k)

    for xc in range(nc + 1):
        for xp in range(np_ + 1):
            if xc / nc - xp / np_ >= observed - 1e-12:
                total += pmf(nc, pc, xc) * pmf(np_, pp, xp)
    return total


@pytest.mark.parametrize(("canary_bad", "primary_bad"), [(3, 1), (5, 0), (2, 4)])
def test_the_exact_p_value_is_what_its_definition_enumerates(canary_bad: int, primary_bad: int) -> None:
    result = significance.compare(canary_bad, 40, primary_bad, 120, increase=0.02)
    assert result.method == "exact test at the tolerance boundary"
    assert result.p_value == pytest.approx(_brute_force_p(canary_bad, 40, primary_bad, 120, 0.02), rel=2e-3)


@pytest.mark.parametrize(
    ("n_c", "primary_share", "increase", "ratio"),
    [(300, 0.001, 0.005, 1.0), (30, 0.01, 0.005, 1.0), (1000, 0.002, 0.0, 2.0)],
)
def test_small_canaries_at_the_tolerance_fail_no_more_often_than_asked(
    n_c: int, primary_share: float, increase: float, ratio: float
) -> None:
    rng = np.random.default_rng(5)
    runs, failures = 3000, 0
    canary_share = ratio * primary_share + increase  # exactly at the tolerance
    draws = zip(rng.binomial(n_c, canary_share, runs), rng.binomial(9 * n_c, primary_share, runs), strict=True)
    for bad_c, bad_p in draws:
        result = significance.compare(bad_c, n_c, bad_p, 9 * n_c, increase=increase, ratio=ratio, confidence=0.99)
        failures += result.verdict is models.Verdict.FAIL
    assert failures / runs <= 0.015
