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
