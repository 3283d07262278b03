"""Fixed limits judged on counts, the always-valid tests, and what a promotion could have caught."""

from __future__ import annotations

import dataclasses
import datetime
import math

import helpers
import numpy as np
import pytest

from canary_operator import judging, measuring, models, significance

AT = datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC)
SPEC = helpers.example_spec()  # error-rate max 1 (%), latency-p99 max 500 (ms), minRequests 50, interval 10s
BUCKETS = (0.1, 0.25, 0.5, 1.0, math.inf)


def tally(requests: float, errors: float, slow: float = 0.0) -> measuring.Tally:
    """An arm's counts; ``slow`` of its requests took over 500 ms, the rest under 100 ms."""
    fast = requests - slow
    buckets = {0.1: fast, 0.25: fast, 0.5: fast, 1.0: requests, math.inf: requests}
    return measuring.Tally(judging.Reading(requests), judging.Reading(errors), buckets)


def window(label: str, seconds: float, canary: measuring.Tally, primary: measuring.Tally) -> measuring.Window:
    return measuring.Window(label, seconds, canary, primary)


def measured(
    canary: measuring.Tally,
    primary: measuring.Tally,
    since: tuple[measuring.Tally, measuring.Tally] | None = None,
    spec: models.CanaryRolloutSpec = SPEC,
    step_requests: float | None = None,
) -> judging.Measurements:
    """A 10 s window at weight 10%, and the counts of the 5 minutes since the canary started."""
    since_window = window("5m since the canary started", 300, *since) if since else None
    return measuring.build(
        spec.analysis,
        at=AT,
        weight=10,
        recent={"10s": window("10s", 10, canary, primary)},
        since_start=since_window,
        step_requests=judging.Reading(step_requests) if step_requests is not None else None,
    )


def check(
    canary: measuring.Tally,
    primary: measuring.Tally,
    since: tuple[measuring.Tally, measuring.Tally] | None = None,
    spec: models.CanaryRolloutSpec = SPEC,
    step_requests: float | None = None,
) -> models.CheckRecord:
    return judging.judge(spec.analysis, measured(canary, primary, since, spec, step_requests))


@pytest.mark.parametrize(("n", "p", "k"), [(30, 0.01, 2), (200, 0.05, 3), (200, 0.05, 18), (50, 0.3, 20)])
def test_binomial_tails_are_what_their_definition_sums(n: int, p: float, k: int) -> None:
    pmf = [math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(n + 1)]
    assert significance.binomial_tail(n, p, k) == pytest.approx(sum(pmf[k:]), rel=1e-9)
    assert significance.binomial_tail(n, p, k, upper=False) == pytest.approx(sum(pmf[: k + 1]), rel=1e-9)


def test_a_canary_well_over_the_limit_fails_and_one_well_under_passes() -> None:
    over = significance.against_limit(15, 300, 0.01)
    assert over.verdict is models.Verdict.FAIL and over.p_value < 0.001
    under = significance.against_limit(2, 3000, 0.01)
    assert under.verdict is models.Verdict.PASS
    assert significance.against_limit(4, 300, 0.01).verdict is models.Verdict.INCONCLUSIVE


def test_a_window_at_the_limit_fails_no_more_often_than_asked() -> None:
    rng = np.random.default_rng(3)
    for n in (60, 300, 3000):
        draws = rng.binomial(n, 0.01, 4000)
        failed = sum(significance.against_limit(int(x), n, 0.01).verdict is models.Verdict.FAIL for x in draws)
        assert failed / len(draws) <= 0.01


def test_looking_after_every_scrape_at_a_canary_at_the_limit_rolls_back_at_most_1_in_100() -> None:
    # The continuous test's promise, simulated at its worst case: canaries exactly at the limit,
    # read every 50 requests up to 20,000; a rollback is any look whose always-valid p <= 1%.
    rng = np.random.default_rng(11)
    canaries, looks, per_look = 500, 400, 50
    increments = rng.binomial(per_look, 0.01, (canaries, looks)).cumsum(axis=1)
    rolled = 0
    for row in increments:
        for i in range(0, looks):
            if significance.always_valid_limit_p(int(row[i]), per_look * (i + 1), 0.01) <= 0.01:
                rolled += 1
                break
    assert rolled / canaries <= 0.01
    # The fixed-window test looked at the same way would roll back far more: that is why the counts
    # since the start get the always-valid test.
    fixed = sum(
        any(significance.binomial_tail(per_look * (i + 1), 0.01, int(row[i])) <= 0.01 for i in range(0, looks, 10))
        for row in increments[:200]
    )
    assert fixed / 200 > 0.05


def test_the_ratio_test_on_two_arms_keeps_its_promise_under_continuous_looks() -> None:
    # Canary and primary alike (0.5% errors), the primary's rate jumping tenfold in some stretches (an
    # incident hitting both arms): conditioning on the bad requests removes it.
    rng = np.random.default_rng(5)
    runs, stretches, rolled = 400, 100, 0
    for _ in range(runs):
        evidence = significance.RatioEvidence()
        for _ in range(stretches):
            share = 0.005 * (10 if rng.random() < 0.1 else 1)
            evidence.add(rng.binomial(30, share), 30, rng.binomial(270, share), 270)
            if evidence.p_value <= 0.01:
                rolled += 1
                break
    assert rolled / runs <= 0.01


def test_a_canary_at_the_minimum_detectable_effect_is_caught_nine_times_in_ten() -> None:
    n, alpha = 2000, 0.005
    share = significance.detectable_share(n, 0.01, alpha)
    assert 0.01 < share < 0.03
    draws = np.random.default_rng(2).binomial(n, share, 3000)
    caught = np.mean([significance.always_valid_limit_p(int(x), n, 0.01) <= alpha for x in draws])
    assert 0.88 <= caught <= 0.95
    assert math.isnan(significance.detectable_share(2, 0.01, alpha)), "2 requests cannot show anything"


def test_a_shared_incident_holds_instead_of_rolling_back_and_names_the_primary() -> None:
    record = check(tally(200, 12), tally(1800, 115))  # 6% vs the primary's 6.4%: a dependency is down
    assert record.verdict is models.Verdict.INCONCLUSIVE
    assert record.cause == judging.PRIMARY_BREACHES
    assert "error-rate 6% beyond max 1% (12/200 over 10s" in record.reason
    assert "but the primary breaches too (6.39%): not specific to the canary" in record.reason
    assert record.metrics[0].primary == pytest.approx(100 * 115 / 1800)


def test_a_canary_much_worse_than_a_breaching_primary_still_fails() -> None:
    record = check(tally(200, 40), tally(1800, 40))  # 20% vs 2.2%
    assert record.verdict is models.Verdict.FAIL
    assert "primary 2.22%: the canary over 2x worse" in record.reason


def test_without_incident_awareness_the_canary_is_blamed() -> None:
    spec = helpers.example_spec(incidentAware=False)
    assert check(tally(200, 12), tally(1800, 115), spec=spec).verdict is models.Verdict.FAIL


def test_a_window_too_small_for_a_check_still_condemns_a_broken_canary_through_the_evidence() -> None:
    # 10 s at 3 req/s: 3 canary requests, under minRequests; five minutes hold 90, 30 of them failed.
    record = check(tally(3, 1), tally(27, 0), since=(tally(90, 30), tally(810, 1)))
    assert record.verdict is models.Verdict.FAIL
    assert "error-rate 33.33% > max 1% (30/90 over 5m since the canary started, always-valid p<0.001)" in record.reason
    evidence = record.metrics[0].evidence
    assert evidence is not None and evidence.verdict is models.Verdict.FAIL
    assert (evidence.canary_bad, evidence.canary_requests, evidence.primary_bad) == (30, 90, 1)
    assert judging.evidence_failed(record) == [record.metrics[0]]


def test_a_healthy_canary_without_proof_is_cleared_by_the_no_harm_rule_with_what_it_would_have_caught() -> None:
    record = check(tally(60, 0), tally(540, 1), since=(tally(412, 1), tally(3708, 4)), step_requests=60)
    assert record.verdict is models.Verdict.INCONCLUSIVE, "412 requests cannot prove < 1%"
    assert record.cleared is True
    assert record.detectable is not None
    assert record.detectable.startswith("after 412 canary requests; a canary with error-rate >= ")
    assert "with 90% probability" in record.detectable
    proven = helpers.example_spec(passRule="proven")
    assert check(tally(60, 0), tally(540, 1), since=(tally(412, 1), tally(3708, 4)), spec=proven).cleared is None


def test_at_the_first_check_the_window_and_the_counts_since_the_start_say_what_is_missing_once() -> None:
    # At the first check "since the canary started" is the check's own window: the same counts, the same words.
    canary, primary = tally(119, 0), tally(476, 0)
    measurements = measuring.build(
        SPEC.analysis,
        at=AT,
        weight=20,
        recent={"10s": window("10s", 10, canary, primary)},
        since_start=window("10s", 10, canary, primary),
        step_requests=judging.Reading(119),
    )
    record = judging.judge(SPEC.analysis, measurements)
    assert record.verdict is models.Verdict.INCONCLUSIVE
    assert record.reason.startswith("error-rate 0% (0/119 over 10s): cannot tell from max 1% yet"), record.reason
    assert record.reason.count("cannot tell") == 1, record.reason


def test_a_window_past_the_limit_holds_the_step_though_it_proves_nothing_yet() -> None:
    # The demo's bad canary at its first check: 4 of 107 requests failed (3.7% against max 1%), too few to show
    # harm at 99% confidence. "No harm shown" is not what a person reads in that; the step waits for more.
    past = check(tally(107, 4), tally(440, 0), since=(tally(107, 4), tally(440, 0)), step_requests=107)
    assert past.verdict is models.Verdict.INCONCLUSIVE and past.cause == judging.INSUFFICIENT_TRAFFIC
    assert past.cleared is False
    within = check(tally(107, 1), tally(440, 0), since=(tally(107, 1), tally(440, 0)), step_requests=107)
    assert within.verdict is models.Verdict.INCONCLUSIVE and within.cleared is True, "0.93%: within max 1%"


def test_too_few_requests_at_this_step_is_not_cleared() -> None:
    record = check(tally(60, 0), tally(540, 1), since=(tally(412, 1), tally(3708, 4)), step_requests=20)
    assert record.cleared is False


def test_a_prometheus_problem_is_never_cleared() -> None:
    down = judging.Reading.missing(judging.UNREACHABLE, "Prometheus unreachable")
    broken = measuring.Tally(down, down, down)
    assert check(broken, broken, step_requests=500).cleared is False


def test_the_continuous_test_reads_only_the_counts_since_the_start() -> None:
    since = window("2m since the canary started", 120, tally(240, 15, slow=1), tally(2160, 2))
    measurements = measuring.build(SPEC.analysis, at=AT, weight=10, recent={}, since_start=since)
    record = judging.continuous(SPEC.analysis, measurements)
    assert record.verdict is models.Verdict.FAIL
    assert "error-rate 6.25% > max 1% (15/240 over 2m since the canary started" in record.reason
    assert [e.metric for e in record.metrics] == ["error-rate", "latency-p99"]
    healthy = window("2m since the canary started", 120, tally(240, 0), tally(2160, 2))
    fine = judging.continuous(
        SPEC.analysis, measuring.build(SPEC.analysis, at=AT, weight=10, recent={}, since_start=healthy)
    )
    assert fine.verdict is models.Verdict.PASS


def test_an_incident_over_and_done_does_not_condemn_the_canary_through_the_counts_since_the_start() -> None:
    # A burst is over; since the start the canary is at 1.2% slow, the primary at 0.9%: under the limit now,
    # but over half of it. The canary's pods wobbled more during the burst; that is not the canary's doing.
    record = check(tally(500, 0), tally(4500, 1), since=(tally(50000, 0, slow=600), tally(450000, 1, slow=4050)))
    latency = record.metrics[1]
    assert latency.verdict is models.Verdict.INCONCLUSIVE
    assert "but the primary is near the limit too (0.9%): not specific to the canary" in latency.reason


@pytest.mark.parametrize(
    ("short", "verdict"),
    [
        (judging.Reading(0.02), models.Verdict.FAIL),  # 20x the 0.1% budget on both windows
        (judging.Reading.missing(judging.QUERY_REJECTED, "bad SLO query"), models.Verdict.INCONCLUSIVE),
    ],
)
def test_an_error_budget_burning_or_unread_is_never_cleared_by_the_no_harm_rule(
    short: judging.Reading, verdict: models.Verdict
) -> None:
    # The metrics alone would clear the step (healthy, short of proof): the burn rate is judged too. A failed
    # check the pass rule calls cleared advances the step under failureThreshold 2, on a failing canary.
    measurements = measured(tally(60, 0), tally(540, 1), since=(tally(412, 1), tally(3708, 4)), step_requests=60)
    burning = dataclasses.replace(measurements, burn_short=short, burn_long=judging.Reading(0.02))
    assert judging.judge(SPEC.analysis, measurements).cleared is True, "the metrics alone clear it"
    record = judging.judge(SPEC.analysis, burning, slo=models.SLO(objective=99.9))
    assert record.verdict is verdict
    assert record.cleared is False
