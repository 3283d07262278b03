"""The judge, case by case: what a check concludes from the numbers it is given."""

from __future__ import annotations

import datetime
import math

import helpers
import pytest

from canary_operator import judging, models

AT = datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC)
SPEC = helpers.example_spec()  # error-rate max 1 (%), latency-p99 max 500 (ms), minRequests 50
ERROR_RATE, LATENCY = SPEC.analysis.metrics


def measure(
    canary_n: judging.Reading = judging.Reading(500.0),
    error: judging.Reading = judging.Reading(0.2),
    latency: judging.Reading = judging.Reading(120.0),
    primary_error: judging.Reading = judging.Reading(0.1),
) -> models.CheckRecord:
    measurements = judging.Measurements(
        at=AT,
        window="10s",
        weight=10,
        canary_requests=canary_n,
        primary_requests=judging.Reading(4500.0),
        metrics=[
            judging.MetricReadings(ERROR_RATE, "q-error", error, primary_error),
            judging.MetricReadings(LATENCY, "q-latency", latency, judging.Reading(110.0)),
        ],
    )
    return judging.judge(SPEC.analysis, measurements)


def test_every_metric_within_its_limit_on_enough_requests_passes() -> None:
    record = measure()
    assert record.verdict is models.Verdict.PASS
    assert [m.verdict for m in record.metrics] == [models.Verdict.PASS, models.Verdict.PASS]


def test_an_error_rate_above_max_fails_with_value_limit_and_sample_size() -> None:
    record = measure(error=judging.Reading(5.2))
    assert record.verdict is models.Verdict.FAIL
    assert record.reason == "error-rate 5.2% > max 1% (n=500, primary 0.1%)"
    failed = record.metrics[0]
    assert (failed.canary, failed.primary, failed.canary_requests, failed.limit) == (5.2, 0.1, 500.0, "<= 1%")


def test_a_value_below_min_fails() -> None:
    spec = helpers.example_spec(metrics=[{"name": "throughput", "template": "request-rate", "min": 5}])
    measurements = judging.Measurements(
        AT,
        "10s",
        10,
        judging.Reading(500.0),
        judging.Reading(5000.0),
        [judging.MetricReadings(spec.analysis.metrics[0], "q", judging.Reading(2.0), judging.Reading(40.0))],
    )
    record = judging.judge(spec.analysis, measurements)
    assert record.verdict is models.Verdict.FAIL
    assert "throughput 2 req/s < min 5 req/s" in record.reason


def test_every_metric_is_judged_even_when_one_fails() -> None:
    record = measure(error=judging.Reading(3.0), latency=judging.Reading(800.0))
    assert record.verdict is models.Verdict.FAIL
    assert [m.verdict for m in record.metrics] == [models.Verdict.FAIL, models.Verdict.FAIL]
    assert "error-rate 3% > max 1%" in record.reason and "latency-p99 800ms > max 500ms" in record.reason


def test_too_few_canary_requests_is_inconclusive_and_says_how_many_more_are_needed() -> None:
    record = measure(canary_n=judging.Reading(12.0), error=judging.Reading(50.0))
    assert record.verdict is models.Verdict.INCONCLUSIVE, "a 50% error rate on 12 requests is not a verdict"
    assert record.cause == judging.INSUFFICIENT_TRAFFIC
    assert record.reason == "error-rate: 12 canary requests in 10s, need 50 (38 more)"


def test_zero_traffic_is_inconclusive_never_a_pass() -> None:
    record = measure(canary_n=judging.Reading(0.0), error=judging.Reading.missing(judging.NO_DATA, "NaN"))
    assert record.verdict is models.Verdict.INCONCLUSIVE
    assert record.cause == judging.INSUFFICIENT_TRAFFIC


def test_no_series_for_the_request_count_is_inconclusive() -> None:
    record = measure(canary_n=judging.Reading.missing(judging.NO_DATA, "no series"))
    assert record.verdict is models.Verdict.INCONCLUSIVE
    assert record.cause == judging.INSUFFICIENT_TRAFFIC


@pytest.mark.parametrize("latency", [judging.Reading.missing(judging.NO_DATA, "no series"), judging.Reading(math.nan)])
def test_a_metric_without_a_number_is_inconclusive(latency: judging.Reading) -> None:
    record = measure(latency=latency)
    assert record.verdict is models.Verdict.INCONCLUSIVE
    assert record.cause == judging.NO_DATA
    assert record.metrics[0].verdict is models.Verdict.PASS, "the other metric is still judged"


def test_an_unreachable_prometheus_is_inconclusive_for_every_metric() -> None:
    down = judging.Reading.missing(judging.UNREACHABLE, "Prometheus at http://p:9090 unreachable: ConnectionError")
    record = measure(canary_n=down, error=down, latency=down)
    assert record.verdict is models.Verdict.INCONCLUSIVE
    assert record.cause == judging.UNREACHABLE
    assert all(m.verdict is models.Verdict.INCONCLUSIVE for m in record.metrics)
    assert "unreachable" in record.reason


def test_a_rejected_query_is_inconclusive_with_the_reason() -> None:
    bad = judging.Reading.missing(judging.QUERY_REJECTED, "Prometheus rejected the query: parse error")
    record = measure(latency=bad)
    assert record.verdict is models.Verdict.INCONCLUSIVE
    assert record.cause == judging.QUERY_REJECTED


def test_a_failure_outweighs_an_inconclusive_metric() -> None:
    record = measure(error=judging.Reading(9.0), latency=judging.Reading.missing(judging.NO_DATA, "no series"))
    assert record.verdict is models.Verdict.FAIL


COMPARED = helpers.example_spec(
    metrics=[
        {"name": "error-rate", "template": "error-rate", "compare": "primary", "maxIncrease": 0.5},
        {"name": "latency", "template": "latency-p99", "compare": "primary", "slowerThan": 500, "maxIncrease": 1},
    ]
)


def counts(n: tuple[float, float], bad: tuple[float, float], window: str = "1m", what: str = "") -> judging.Counts:
    return judging.Counts(
        window, judging.Reading(bad[0]), judging.Reading(n[0]), judging.Reading(bad[1]), judging.Reading(n[1]), what
    )


def compared(
    n: tuple[float, float],
    errors: tuple[float, float],
    slow: tuple[float, float] = (0.0, 0.0),
    since_start: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> models.CheckRecord:
    error_metric, latency_metric = COMPARED.analysis.metrics
    cumulative = counts(*since_start, window="30m since the canary started") if since_start else None
    measurements = judging.Measurements(
        AT,
        "1m",
        10,
        judging.Reading(n[0]),
        judging.Reading(n[1]),
        [
            judging.MetricReadings(
                error_metric,
                "q",
                judging.Reading(100 * errors[0] / max(n[0], 1)),
                judging.Reading(100 * errors[1] / max(n[1], 1)),
                counts(n, errors),
                cumulative,
            ),
            judging.MetricReadings(
                latency_metric,
                "q",
                judging.Reading(120.0),
                judging.Reading(110.0),
                counts(n, slow, what="requests slower than 500ms"),
                note="canary p99 in bucket 100ms-250ms",
            ),
        ],
    )
    return judging.judge(COMPARED.analysis, measurements)


def test_a_canary_worse_than_the_primary_fails_with_the_numbers_a_human_reads() -> None:
    record = compared((4812, 43120), (101, 172))
    assert record.verdict is models.Verdict.FAIL
    failed = record.metrics[0]
    assert failed.reason == "error-rate 2.1% vs primary 0.399% (n=4812/43120 over 1m), +1.7pp > +0.5pp, p<0.001"
    assert failed.statistic is not None and failed.statistic == "two proportions: Agresti-Caffo interval"
    assert failed.p_value is not None and failed.p_value < 0.001
    assert failed.bound is not None and failed.bound.startswith("+")
    assert record.metrics[1].verdict is models.Verdict.PASS, "the other metric is judged too"


def test_a_canary_on_par_with_the_primary_passes() -> None:
    record = compared((4812, 43120), (19, 170))
    assert record.verdict is models.Verdict.PASS
    assert "within +0.5pp" in record.metrics[0].reason


def test_too_few_requests_to_compare_is_inconclusive_with_the_requests_needed() -> None:
    record = compared((40, 360), (1, 2))
    assert record.verdict is models.Verdict.INCONCLUSIVE
    assert record.cause == judging.INSUFFICIENT_TRAFFIC
    first = record.metrics[0]
    assert first.needed_requests is not None and first.needed_requests > 100
    assert f"need ~{first.needed_requests} more canary requests" in first.reason


def test_slow_requests_are_compared_as_a_share_with_the_buckets_behind_the_p99() -> None:
    record = compared((5000, 45000), (5, 45), slow=(250, 450))
    latency = record.metrics[1]
    assert latency.verdict is models.Verdict.FAIL
    assert latency.reason.startswith("requests slower than 500ms 5% vs primary 1% (n=5000/45000 over 1m), +4pp > +1pp")
    assert latency.reason.endswith("; canary p99 in bucket 100ms-250ms")


def test_a_comparison_without_the_bad_counts_is_inconclusive() -> None:
    error_metric = COMPARED.analysis.metrics[0]
    missing = judging.Reading.missing(judging.NO_DATA, "no series")
    without_bad = judging.Counts("1m", missing, judging.Reading(500.0), missing, judging.Reading(4500.0))
    measurements = judging.Measurements(
        AT,
        "1m",
        10,
        judging.Reading(500.0),
        judging.Reading(4500.0),
        [judging.MetricReadings(error_metric, "q", judging.Reading(1.0), judging.Reading(1.0), without_bad)],
    )
    record = judging.judge(COMPARED.analysis, measurements)
    assert record.verdict is models.Verdict.INCONCLUSIVE


def test_a_p99_on_fewer_than_100_requests_is_not_trusted() -> None:
    record = measure(canary_n=judging.Reading(80.0), latency=judging.Reading(900.0))
    latency = record.metrics[1]
    assert latency.verdict is models.Verdict.INCONCLUSIVE
    assert "need 100 (a p99 needs 100)" in latency.reason


def test_tightened_limits_apply_in_the_warning_band() -> None:
    spec = helpers.example_spec()
    measurements = judging.Measurements(
        AT,
        "10s",
        10,
        judging.Reading(500.0),
        judging.Reading(4500.0),
        [judging.MetricReadings(spec.analysis.metrics[0], "q", judging.Reading(0.7), judging.Reading(0.1))],
    )
    assert judging.judge(spec.analysis, measurements).verdict is models.Verdict.PASS
    tightened = judging.judge(spec.analysis, measurements, tighten=0.5)
    assert tightened.verdict is models.Verdict.FAIL
    assert "> max 0.5%" in tightened.reason


def test_a_fast_burn_of_the_error_budget_fails_only_when_both_windows_burn() -> None:
    slo = models.SLO(objective=99.9)
    spec = helpers.example_spec()

    def burn(short: float, long: float) -> models.CheckRecord:
        measurements = judging.Measurements(
            AT,
            "10s",
            10,
            judging.Reading(500.0),
            judging.Reading(4500.0),
            [],
            burn_short=judging.Reading(short),
            burn_long=judging.Reading(long),
        )
        return judging.judge(spec.analysis, measurements, slo=slo)

    assert burn(0.02, 0.02).verdict is models.Verdict.FAIL  # 20x the 0.1% budget on both windows
    assert burn(0.02, 0.005).verdict is models.Verdict.PASS  # a short spike: the long window is at 5x
    assert "burn rate 20x over 5m, 20x over 1h" in burn(0.02, 0.02).reason


def test_counts_since_the_canary_started_settle_what_one_window_cannot() -> None:
    # One minute at 5 req/s says nothing; thirty minutes of the same canary do, both ways.
    healthy = compared((300, 2700), (0, 3), since_start=((9000, 81000), (9, 81)))
    assert healthy.metrics[0].verdict is models.Verdict.PASS
    assert "over 30m since the canary started" in healthy.metrics[0].reason
    broken = compared((300, 2700), (6, 3), since_start=((9000, 81000), (180, 81)))
    assert broken.metrics[0].verdict is models.Verdict.FAIL
    unsure = compared((300, 2700), (1, 3), since_start=((600, 5400), (2, 6)))
    assert unsure.metrics[0].verdict is models.Verdict.INCONCLUSIVE
    assert "over 10m" not in unsure.metrics[0].reason and "since the canary started" in unsure.metrics[0].reason
