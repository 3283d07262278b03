"""A "Prometheus" that hangs, trickles, floods or lies costs one check a bounded time and gives no pass.

Every server here is a real one on 127.0.0.1 (``canary_bench.impostors``); the
provider is the operator's, over its one shared connection pool. Each hostile
answer must become a typed error within the check's timeout, be inconclusive
(never a pass) once judged, and leave no byte of its body in the message that
reaches the status, the Events and the logs.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from collections.abc import Callable, Iterator

import helpers
import pytest

from canary_bench import impostors, prometheus, traffic
from canary_operator import judging, measuring, models, providers
from canary_operator.providers import prometheus as prometheus_provider

START = prometheus.EPOCH
AT = datetime.datetime.fromtimestamp(START + 600, tz=datetime.UTC)
TIMEOUT = 1.0
SLACK = 1.0  # scheduling and connection set-up on a loaded two-core machine

Impostors = Callable[..., impostors.Impostor]


@pytest.fixture
def impostor() -> Iterator[Impostors]:
    started: list[impostors.Impostor] = []

    def start(behaviour: str, **options: str | float) -> impostors.Impostor:
        server = impostors.Impostor(behaviour, **options).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.release()
        server.stop()


HOSTILE = [
    ("hang", providers.TimedOutError, "did not answer within 1s"),
    ("trickle", providers.TimedOutError, "did not answer within 1s"),
    ("huge", providers.ResponseTooLargeError, "more than 1048576 bytes"),
    ("huge-declared", providers.ResponseTooLargeError, "more than 1048576 bytes"),
    ("html", providers.BadResponseError, "not JSON (text/html)"),
    ("not-http", providers.BadResponseError, "invalid HTTP"),
    ("garbage-json", providers.BadResponseError, "not JSON"),
    ("wrong-shape", providers.BadResponseError, "not [time, value]"),
    ("matrix", providers.QueryError, "returned a matrix"),
    ("+Inf", providers.NoDataError, "+Inf, not a measurement"),
    ("-Inf", providers.NoDataError, "-Inf, not a measurement"),
    ("NaN", providers.NoDataError, "NaN"),
    ("redirect", providers.BadResponseError, "redirect (HTTP 302), not followed"),
    ("error-500", providers.UnreachableError, "failed (HTTP 500, internal)"),
    ("gzip", providers.BadResponseError, "compressed answer"),
    ("endless-headers", providers.BadResponseError, "invalid HTTP"),
]


@pytest.mark.parametrize(("behaviour", "error", "words"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_a_hostile_prometheus_gives_a_typed_error_within_the_timeout(
    impostor: Impostors, pool: prometheus_provider.Pool, behaviour: str, error: type[Exception], words: str
) -> None:
    bystander = impostor("hang")  # where the redirect points: it must never be asked
    server = impostor(behaviour, redirect_to=bystander.url + "/api/v1/query?query=up")
    provider = pool.provider(providers.Endpoint(server.url, timeout=TIMEOUT))
    began = time.monotonic()
    with pytest.raises(error) as caught:
        await provider.query("vector(1)", AT)
    assert time.monotonic() - began < TIMEOUT + SLACK
    assert type(caught.value) is error
    message = str(caught.value)
    assert words in message
    assert impostors.SECRET_MARKER not in message and "Admin" not in message and "OpenSSH" not in message
    assert bystander.requests == 0


@pytest.mark.parametrize("behaviour", ["hang", "huge", "html", "not-http", "wrong-shape", "+Inf", "-Inf", "redirect"])
async def test_a_check_against_a_hostile_prometheus_is_inconclusive_and_quotes_nothing_of_it(
    impostor: Impostors, pool: prometheus_provider.Pool, behaviour: str
) -> None:
    spec = helpers.example_spec(interval="60s")
    server = impostor(behaviour)
    began = time.monotonic()
    measurements = await measuring.measure(
        spec, "shop", 10, AT, pool.provider(providers.Endpoint(server.url, timeout=TIMEOUT))
    )
    assert time.monotonic() - began < TIMEOUT + SLACK, "all the check's queries share one timeout"
    record = judging.judge(spec.analysis, measurements)
    assert record.verdict is models.Verdict.INCONCLUSIVE
    assert all(m.verdict is models.Verdict.INCONCLUSIVE for m in record.metrics)
    assert impostors.SECRET_MARKER not in json.dumps(record.model_dump(mode="json"))


def healthy_series() -> list[prometheus.Series]:
    def arm(pod: str, rps: float, errors: float) -> list[prometheus.Series]:
        return prometheus.request_series(
            "shop", pod, start=START, end=START + 900, step=5, rps=rps, error_ratio=errors,
            latency=traffic.DiscreteLatency.with_quantile(0.12),
        )  # fmt: skip

    return arm("web-canary-6d5f7c9b8-x2k4p", 5, 0.004) + arm("web-primary-7c9d8f6b5-q8w3z", 45, 0.002)


@pytest.mark.parametrize(("query", "bound"), [("-1/0", {"max": 1.0}), ("1/0", {"min": 1.0})], ids=["-Inf", "+Inf"])
async def test_an_infinite_value_from_real_promql_never_passes_its_limit(
    backfill_prometheus: Callable[..., prometheus.PrometheusServer],
    pool: prometheus_provider.Pool,
    query: str,
    bound: dict[str, float],
) -> None:
    # -Inf is below every max and +Inf above every min: compared as numbers, both would pass.
    server = backfill_prometheus(healthy_series())
    spec = helpers.example_spec(interval="60s")
    metric = models.Metric(name="ratio", query=query, **bound)
    spec = spec.model_copy(update={"analysis": spec.analysis.model_copy(update={"metrics": [metric]})})
    measurements = await measuring.measure(spec, "shop", 10, AT, pool.provider(providers.Endpoint(server.url)))
    record = judging.judge(spec.analysis, measurements)
    assert record.verdict is models.Verdict.INCONCLUSIVE
    assert "Inf, not a measurement" in record.metrics[0].reason


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition the test does not control the timing of (with a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_three_hostile_tenants_do_not_delay_a_healthy_rollouts_check(
    backfill_prometheus: Callable[..., prometheus.PrometheusServer],
    impostor: Impostors,
    pool: prometheus_provider.Pool,
) -> None:
    server = backfill_prometheus(healthy_series())
    spec = helpers.example_spec(interval="60s")
    hostile = [impostor("hang"), impostor("trickle"), impostor("hang")]
    # The tenants get the longest timeout there is (30s): their checks hold their connections for the whole test.
    tenants = [
        asyncio.create_task(
            measuring.measure(spec, f"tenant-{i}", 10, AT, pool.provider(providers.Endpoint(h.url, timeout=30)))
        )
        for i, h in enumerate(hostile)
    ]
    try:
        await until(lambda: all(h.in_flight == pool.concurrency for h in hostile))
        began = time.monotonic()
        healthy = await measuring.measure(spec, "shop", 10, AT, pool.provider(providers.Endpoint(server.url)))
        took = time.monotonic() - began
        assert not any(t.done() for t in tenants), "every hostile check was still waiting for its server"
    finally:
        for h in hostile:
            h.release()  # the servers hang up without an answer
        measured = await asyncio.gather(*tenants)

    record = judging.judge(spec.analysis, healthy)
    # Every number arrived: 300 canary requests at 0.4% cannot prove < 1% (Inconclusive, short of traffic), but
    # nothing is missing or failing.
    assert record.verdict is not models.Verdict.FAIL and record.cause in (None, judging.INSUFFICIENT_TRAFFIC)
    assert record.metrics[0].canary == pytest.approx(0.4) and record.metrics[1].canary == pytest.approx(120)
    # Far less than one interval (60s), and less than the tenants' 30s timeout it would otherwise wait behind.
    assert took < 5, f"the healthy check took {took:.1f}s"
    for tenant in measured:
        judged = judging.judge(spec.analysis, tenant)
        assert judged.verdict is models.Verdict.INCONCLUSIVE
        assert judged.cause in (judging.UNREACHABLE, judging.BAD_RESPONSE)  # hung up on, or mid-body
