"""The judge benchmark's parts: the trace generator, the peers' rules and the replay of our own rule."""

from __future__ import annotations

import math
import statistics

import pytest

from canary_bench.benchmarks import corpus, example, judge, peers
from canary_operator import judging, measuring, models

HEALTHY = corpus.FAMILY["healthy 0.1%"]


def arm(requests: int, errors: int = 0, slow: int = 0) -> corpus.Arm:
    """An arm whose requests all take 40 ms, but ``slow`` of them take 600 ms."""
    fast = requests - slow
    buckets = tuple(fast + slow if bound >= 0.75 else fast if bound >= 0.05 else 0 for bound in corpus.BUCKETS)
    return corpus.Arm(requests, errors, buckets)


def trace(*intervals: tuple[corpus.Arm, corpus.Arm]) -> corpus.Trace:
    return corpus.Trace(HEALTHY, 500.0, 0, tuple(corpus.Interval(c, p) for c, p in intervals))


GOOD = (arm(3000, 3), arm(27000, 27))
ERRORS = (arm(3000, 150), arm(27000, 27))  # 5% against 0.1%: decisive at once
FAILING = (arm(3000, 32), arm(27000, 27))  # 1.07% against 0.1%: fails (p ~ 0.0015), not decisively
SLOW = (arm(3000, 3, slow=300), arm(27000, 27))  # a p99 of 725 ms
SILENT = (arm(0), arm(27000, 27))  # the canary answered nothing


# ---------------------------------------------------------------- corpus


def test_the_same_seed_draws_the_same_trace() -> None:
    family = corpus.FAMILY["err +2pp"]
    assert corpus.generate(family, 50.0, 7, seed=3) == corpus.generate(family, 50.0, 7, seed=3)


def test_another_seed_or_index_draws_another_trace() -> None:
    family = corpus.FAMILY["err +2pp"]
    first = corpus.generate(family, 50.0, 7, seed=3)
    assert corpus.generate(family, 50.0, 7, seed=4) != first
    assert corpus.generate(family, 50.0, 8, seed=3) != first


def test_the_canary_gets_its_share_of_the_requests() -> None:
    drawn = corpus.generate(HEALTHY, 500.0, 0)
    canary = statistics.fmean(i.canary.requests for i in drawn.intervals)
    primary = statistics.fmean(i.primary.requests for i in drawn.intervals)
    assert len(drawn.intervals) == corpus.HORIZON
    assert canary == pytest.approx(3000, rel=0.02)
    assert primary == pytest.approx(27000, rel=0.02)


def test_buckets_are_cumulative_and_end_with_every_request() -> None:
    for interval in corpus.generate(corpus.FAMILY["lat tail"], 50.0, 1).intervals:
        for side in (interval.canary, interval.primary):
            assert list(side.buckets) == sorted(side.buckets)
            assert side.buckets[-1] == side.requests


def test_an_error_regression_starts_at_the_onset_and_only_in_the_canary() -> None:
    drawn = corpus.generate(corpus.FAMILY["err +5pp"], 500.0, 0)
    before, after = drawn.intervals[: corpus.ONSET], drawn.intervals[corpus.ONSET :]
    assert drawn.onset == corpus.ONSET
    assert max(i.canary.error_percent for i in before) < 1
    assert min(i.canary.error_percent for i in after) > 4
    assert max(i.primary.error_percent for i in drawn.intervals) < 1


def test_a_latency_tail_shows_in_the_canary_p99() -> None:
    drawn = corpus.generate(corpus.FAMILY["lat tail"], 500.0, 0)
    assert max(i.canary.p99_ms for i in drawn.intervals[: corpus.ONSET]) < 500
    assert min(i.canary.p99_ms for i in drawn.intervals[corpus.ONSET :]) > 1000


def test_healthy_and_transient_traces_have_no_onset() -> None:
    assert corpus.generate(HEALTHY, 5.0, 0).onset is None
    assert corpus.generate(corpus.FAMILY["blip canary"], 5.0, 0).onset is None


def test_an_arm_without_requests_has_no_error_rate_and_no_p99() -> None:
    assert math.isnan(arm(0).error_percent) and math.isnan(arm(0).p99_ms)


# ---------------------------------------------------------------- Flagger


def test_flagger_with_threshold_1_rolls_back_on_the_first_interval_above_the_limit() -> None:
    assert peers.Flagger(threshold=1).rollback_at(trace(GOOD, GOOD, ERRORS, GOOD)) == 2


def test_flagger_holds_the_p99_to_its_limit() -> None:
    assert peers.Flagger(threshold=1).rollback_at(trace(GOOD, SLOW)) == 1


def test_flagger_never_resets_its_failed_checks() -> None:
    rule = peers.Flagger(threshold=3)
    assert rule.rollback_at(trace(ERRORS, GOOD, ERRORS, GOOD, GOOD, ERRORS)) == 5


def test_flagger_counts_one_failed_check_per_interval_however_many_metrics_fail() -> None:
    both = (arm(3000, 150, slow=300), arm(27000, 27))
    assert peers.Flagger(threshold=2).rollback_at(trace(both, GOOD)) is None


def test_flagger_fails_a_check_without_canary_requests() -> None:
    assert peers.Flagger(threshold=1).rollback_at(trace(GOOD, SILENT)) == 1


def test_flagger_passes_a_canary_within_its_limits() -> None:
    assert peers.Flagger(threshold=1).rollback_at(trace(GOOD, GOOD, GOOD)) is None


# ---------------------------------------------------------------- Argo Rollouts


def test_argo_with_the_default_failure_limit_0_aborts_on_the_first_failed_measurement() -> None:
    assert peers.ArgoRollouts().rollback_at(trace(GOOD, GOOD, SLOW, GOOD)) == 2


def test_argo_aborts_when_the_total_of_failures_exceeds_the_failure_limit() -> None:
    rule = peers.ArgoRollouts(failure_limit=3)
    assert rule.rollback_at(trace(ERRORS, GOOD, ERRORS, ERRORS, GOOD, GOOD)) is None
    assert rule.rollback_at(trace(ERRORS, GOOD, ERRORS, ERRORS, GOOD, ERRORS)) == 5


def test_argo_counts_failures_per_metric() -> None:
    rule = peers.ArgoRollouts(failure_limit=1)
    assert rule.rollback_at(trace(ERRORS, SLOW, GOOD)) is None
    assert rule.rollback_at(trace(ERRORS, SLOW, ERRORS)) == 2


def test_argo_errors_until_the_canary_has_series_and_aborts_after_the_consecutive_error_limit() -> None:
    rule = peers.ArgoRollouts(failure_limit=3)
    assert rule.rollback_at(trace(*[SILENT] * 4, GOOD)) is None
    assert rule.rollback_at(trace(*[SILENT] * 5, GOOD)) == 4


def test_argo_fails_a_nan_measurement_once_the_canary_has_served() -> None:
    assert peers.ArgoRollouts().rollback_at(trace(GOOD, SILENT)) == 1


# ---------------------------------------------------------------- Kayenta


def test_kayenta_classifies_a_clearly_higher_canary_high() -> None:
    canary = [5.1, 4.8, 5.3, 5.0, 4.9, 5.2]
    baseline = [0.1, 0.12, 0.09, 0.11, 0.1, 0.08]
    assert peers.classify(canary, baseline) == peers.HIGH


def test_kayenta_passes_a_canary_like_its_baseline() -> None:
    canary = [0.1, 0.12, 0.09, 0.11, 0.1, 0.13]
    baseline = [0.11, 0.1, 0.12, 0.08, 0.1, 0.09]
    assert peers.classify(canary, baseline) == peers.PASS
    assert peers.classify(baseline, baseline) == peers.PASS


def test_kayenta_flags_a_lower_canary_only_when_the_direction_allows_it() -> None:
    canary = [0.1, 0.12, 0.09, 0.11, 0.1, 0.08]
    baseline = [5.1, 4.8, 5.3, 5.0, 4.9, 5.2]
    assert peers.classify(canary, baseline, direction="increase") == peers.PASS
    assert peers.classify(canary, baseline, direction="either") == peers.LOW


def test_kayenta_scores_nodata_on_half_the_metrics_as_zero() -> None:
    assert peers.classify([], [1.0]) == peers.NODATA
    assert peers.score([peers.NODATA, peers.PASS]) == 0
    assert peers.score([peers.PASS, peers.HIGH]) == 50
    assert peers.score([peers.PASS, peers.PASS]) == 100


def _literal_z(experiment: list[float], control: list[float], mu: float) -> float:
    """Kayenta's statistic at one shift, from the ranks, as its MannWhitney.scala computes it."""
    values = [x - mu for x in experiment] + list(control)
    order = sorted(values)
    rank = {v: (order.index(v) + 1 + len(order) - order[::-1].index(v)) / 2 for v in values}
    nx, ny = len(experiment), len(control)
    dz = sum(rank[v] for v in values[:nx]) - nx * (nx + 1) / 2 - nx * ny / 2
    ties = [order.count(v) for v in set(order)]
    sigma = math.sqrt(nx * ny / 12 * ((nx + ny + 1) - sum(t**3 - t for t in ties) / ((nx + ny) * (nx + ny - 1))))
    return (dz - 0.5 * (dz > 0) + 0.5 * (dz < 0)) / sigma


def test_kayenta_interval_ends_are_where_the_rank_statistic_crosses_the_quantile() -> None:
    canary = [1.83, 0.5, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.3]
    baseline = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
    found = peers.shift_interval(canary, baseline, 0.98)
    z = statistics.NormalDist().inv_cdf(0.99)
    step = 1e-6
    assert _literal_z(canary, baseline, found.lower - step) > z >= _literal_z(canary, baseline, found.lower + step)
    assert _literal_z(canary, baseline, found.upper - step) > -z >= _literal_z(canary, baseline, found.upper + step)
    assert found.lower < found.estimate < found.upper


def test_kayenta_fails_an_interim_judgement_below_the_marginal_score() -> None:
    bad = [ERRORS] * 10
    assert peers.Kayenta(every=5).rollback_at(trace(*bad)) == 4


def test_kayenta_promotes_a_canary_like_its_baseline() -> None:
    assert peers.Kayenta(every=5).rollback_at(trace(*[GOOD] * 10)) is None


# ---------------------------------------------------------------- our rule


def test_our_rule_rolls_back_after_failure_threshold_failed_checks_in_a_row() -> None:
    replay = judge.our_rollbacks(trace(GOOD, FAILING, FAILING, GOOD))
    assert replay.rollback == {"ours ft=2": 2, "ours ft=1": 1, "ours no-ff": 2}


def test_one_decisive_failure_rolls_back_at_once() -> None:
    replay = judge.our_rollbacks(trace(GOOD, ERRORS, GOOD))
    # Without failFast it waits for a second failure: here the counts since the start, which still
    # hold the burst, give it one check later.
    assert replay.rollback == {"ours ft=2": 1, "ours ft=1": 1, "ours no-ff": 2}


def test_evidence_accumulates_until_a_mild_regression_is_caught() -> None:
    # 0.9% against 0.1% with +0.5pp tolerated: no single minute can tell, the counts since the start can.
    mild = (arm(3000, 27), arm(27000, 27))
    assert set(judge.our_rollbacks(trace(mild)).rollback.values()) == {None}
    replay = judge.our_rollbacks(trace(*[mild] * 20))
    assert replay.rollback["ours ft=2"] is not None and replay.rollback["ours ft=2"] >= 3


def test_a_silent_minute_neither_clears_nor_extends_our_streak() -> None:
    replay = judge.our_rollbacks(trace(FAILING, SILENT, FAILING))
    assert replay.rollback["ours ft=2"] == 2


def test_three_inconclusive_checks_in_a_row_would_pause_our_rollout() -> None:
    assert judge.our_rollbacks(trace(GOOD, SILENT, SILENT, SILENT)).held == 3
    assert judge.our_rollbacks(trace(GOOD, SILENT, SILENT, GOOD)).held is None


def test_every_judge_answers_on_a_generated_trace() -> None:
    results = judge.replay(corpus.generate(corpus.FAMILY["err +5pp"], 500.0, 0))
    assert set(results) == {*judge.JUDGES, judge.HELD}
    assert results["ours ft=2"] == corpus.ONSET  # decisive at once at 500 req/s
    assert results["Flagger t=1"] == corpus.ONSET


def test_the_fastest_possible_test_randomises_at_the_last_count_it_needs() -> None:
    # 60 canary requests, +2pp on 0.1%: 2 or more errors catch only 36% of bad canaries, so the test
    # must also fail part of the canaries with exactly 1 error; a healthy canary pays for both.
    bad, healthy = 0.021, 0.001

    def pmf(share: float, k: int) -> float:
        return math.comb(60, k) * share**k * (1 - share) ** (60 - k)

    two_or_more = 1 - pmf(bad, 0) - pmf(bad, 1)
    fraction = (0.5 - two_or_more) / pmf(bad, 1)
    expected = (1 - pmf(healthy, 0) - pmf(healthy, 1)) + fraction * pmf(healthy, 1)
    assert judge.fastest_test_cost(60, bad, healthy) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.024, abs=0.001)


def test_catching_a_regression_faster_always_costs_more_false_failures() -> None:
    for traffic in corpus.TRAFFIC_LEVELS:
        costs = [judge.detection_bounds(traffic, within) for within in (1, 2, 6)]
        assert all(later <= earlier for earlier, later in zip(costs, costs[1:], strict=False))
    # At 5 req/s, catching +2pp within 2 minutes half the time rolls back 2.4% of healthy canaries per window.
    assert judge.detection_bounds(5.0, 2)[1] == pytest.approx(0.024, abs=0.001)


# ---------------------------------------------------------------- examples/web.yaml replayed


def test_slots_split_each_interval_without_losing_a_request() -> None:
    generated = corpus.generate(corpus.FAMILY["err +5pp"], 50.0, 3)
    slots = corpus.slots(generated)
    assert len(slots) == corpus.HORIZON * corpus.SLOTS
    for i, interval in enumerate(generated.intervals):
        part = slots[i * corpus.SLOTS : (i + 1) * corpus.SLOTS]
        for pick in ("canary", "primary"):
            arm_of = [getattr(s, pick) for s in part]
            whole = getattr(interval, pick)
            assert sum(a.requests for a in arm_of) == whole.requests
            assert sum(a.errors for a in arm_of) == whole.errors
            assert tuple(sum(a.buckets[b] for a in arm_of) for b in range(len(corpus.BUCKETS))) == whole.buckets
            assert all(a.buckets[-1] == a.requests and a.errors <= a.requests for a in arm_of)
    assert corpus.slots(generated) == slots, "seeded"


def test_the_replayed_analysis_is_the_examples_own() -> None:
    ten = example.analysis("10s")
    spec = example.example_spec()
    assert [m.max for m in ten.metrics] == [1, 500] and ten.failure_threshold == 2 and ten.min_requests == 50
    assert ten.metrics == spec.analysis.metrics and example.analysis("1m").interval == "1m"


def test_the_continuous_verdict_the_replay_reads_is_what_judging_continuous_computes() -> None:
    generated = corpus.generate(corpus.FAMILY["err +5pp"], 5.0, 1)
    prefix = example.Prefix(corpus.slots(generated))
    spec_analysis = example.analysis("10s")
    for t in (5, 40, 90, 179):
        since = prefix.window(0, t + 1, "since the canary started")
        counts = measuring.build(spec_analysis, at=example.AT, weight=10, recent={}, since_start=since)
        alone = judging.continuous(spec_analysis, counts)
        with_check = measuring.build(
            spec_analysis, at=example.AT, weight=10, recent={"10s": prefix.window(t, t + 1, "10s")}, since_start=since
        )
        record = judging.judge(spec_analysis, with_check, mde=False)
        assert (alone.verdict is models.Verdict.FAIL) == bool(judging.evidence_failed(record))
        assert [e.p_value for e in alone.metrics] == [m.evidence.p_value for m in record.metrics if m.evidence]


def test_the_example_rolls_back_a_5pp_canary_at_500_rps_within_a_check_and_promotes_a_healthy_one() -> None:
    bad = example.replay(corpus.generate(corpus.FAMILY["err +5pp"], 500.0, 0))
    onset = corpus.ONSET * corpus.INTERVAL_SECONDS
    for rule in example.RULES:
        at = bad.rollback[rule]
        assert at is not None and onset < at <= onset + 120, rule
    assert bad.rollback["10s cont"] is not None and bad.rollback["10s cont"] <= onset + 20
    good = example.replay(corpus.generate(corpus.FAMILY["healthy 0.1%"], 500.0, 0))
    assert all(good.rollback[rule] is None for rule in example.RULES)
    assert good.promoted["10s cont"] is not None and good.promoted["10s cont"] <= 120


def test_a_shared_incident_holds_the_example_instead_of_rolling_it_back() -> None:
    found = example.replay(corpus.generate(corpus.FAMILY["incident both"], 500.0, 0))
    assert all(found.rollback[rule] is None for rule in example.RULES)
    assert found.rollback["Flagger t=1 10s"] is not None, "a fixed limit alone blames the canary"


def test_the_information_floor_is_walds_sprt_sample_size() -> None:
    from canary_bench.benchmarks import restore

    # 5% errors against a 1% limit: log-likelihood ratio per request 0.0413, thresholds log(99).
    per_request = 0.05 * math.log(5) + 0.95 * math.log(0.95 / 0.99)
    expected = (0.99 * math.log(99) + 0.01 * math.log(0.01 / 0.99)) / per_request
    assert restore.sprt_requests(0.05, 0.01) == pytest.approx(expected)
    assert restore.sprt_requests(0.05, 0.01) < restore.sprt_requests(0.02, 0.01), "closer to the limit: more requests"
    assert restore.bad_share("slow") == pytest.approx(0.062, abs=0.001)  # p99 800 ms, median 200 ms: 6.2% over 500 ms
