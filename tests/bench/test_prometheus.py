"""The bench's real Prometheus: exact answers over backfilled data, live scraping, restarts."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from canary_bench import prometheus, traffic

Start = Callable[..., prometheus.PrometheusServer]

T0 = prometheus.EPOCH
T1 = T0 + 30 * 60
AT = T0 + 20 * 60  # well inside [T0 + window, T1]: rates are exact there


def canary_and_primary() -> list[prometheus.Series]:
    """Canary: 50 req/s, 2.5 % 5xx, p99 800 ms. Primary: 450 req/s, no errors, 20 ms."""
    return [
        *prometheus.request_series(
            "shop",
            "web-canary",
            start=T0,
            end=T1,
            rps=50,
            error_ratio=0.025,
            latency=traffic.DiscreteLatency.with_quantile(0.8),
        ),
        *prometheus.request_series("shop", "web-primary", start=T0, end=T1, rps=450),
    ]


def test_backfilled_counters_answer_exact_request_and_error_rates(backfill_prometheus: Start) -> None:
    server = backfill_prometheus(canary_and_primary())

    rates = server.query('sum by (pod) (rate(http_requests_total{namespace="shop"}[1m]))', at=AT)
    error_ratio = server.query_value(
        'sum(rate(http_requests_total{pod="web-canary", code=~"5.."}[1m]))'
        ' / sum(rate(http_requests_total{pod="web-canary"}[1m]))',
        at=AT,
    )

    assert {r["metric"]["pod"]: float(r["value"][1]) for r in rates} == {
        "web-canary": pytest.approx(50),
        "web-primary": pytest.approx(450),
    }
    assert error_ratio == pytest.approx(0.025)


def test_backfilled_histogram_answers_exact_p99(backfill_prometheus: Start) -> None:
    server = backfill_prometheus(canary_and_primary())

    def p99(pod: str) -> float | None:
        return server.query_value(
            f'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{pod="{pod}"}}[1m])))',
            at=AT,
        )

    assert p99("web-canary") == pytest.approx(0.8)
    # A fixed 20 ms lands in the (10 ms, 25 ms] bucket; histogram_quantile interpolates inside it.
    assert p99("web-primary") == pytest.approx(0.01 + 0.015 * 0.99)


def test_healthy_pod_has_no_error_series(backfill_prometheus: Start) -> None:
    server = backfill_prometheus(canary_and_primary())

    assert server.query('http_requests_total{pod="web-primary", code=~"5.."}', at=AT) == []


def test_raw_openmetrics_text_is_backfilled_as_given(backfill_prometheus: Start) -> None:
    text = f'# TYPE queue_depth gauge\nqueue_depth{{queue="orders"}} 7 {T0 + 60}\n# EOF\n'
    server = backfill_prometheus(openmetrics=text)

    assert server.query_value('queue_depth{queue="orders"}', at=T0 + 120) == 7
    assert server.query_value('queue_depth{queue="orders"}', at=T0 + 30) is None


def test_openmetrics_rendering_follows_the_format() -> None:
    series = prometheus.request_series("shop", "web", start=T0, end=T0 + 15, rps=1, error_ratio=0.5)
    text = prometheus.render_openmetrics(series)
    lines = text.splitlines()

    assert lines[-1] == "# EOF"
    assert "# TYPE http_requests counter" in lines
    assert "# TYPE http_request_duration_seconds histogram" in lines
    assert f'http_requests_total{{namespace="shop",pod="web",code="500"}} 7.5 {T0 + 15:.3f}' in lines
    assert any(
        line.startswith('http_request_duration_seconds_bucket{namespace="shop",pod="web",le="+Inf"}') for line in lines
    )
    assert any(line.startswith("http_request_duration_seconds_count{") for line in lines)
    assert any(line.startswith("http_request_duration_seconds_sum{") for line in lines)


def test_a_family_cannot_have_two_types() -> None:
    series = [
        prometheus.Series("jobs_total", {}, [(T0, 1)], "counter"),
        prometheus.Series("jobs", {}, [(T0, 1)], "gauge"),
    ]

    with pytest.raises(ValueError, match="both counter and gauge"):
        prometheus.render_openmetrics(series)


def test_quantile_latency_must_lie_inside_a_bucket() -> None:
    with pytest.raises(ValueError, match="not strictly inside"):
        traffic.DiscreteLatency.with_quantile(1.0)


def test_stopped_prometheus_refuses_queries_and_restarts_on_the_same_port_with_its_data(
    backfill_prometheus: Start,
) -> None:
    server = backfill_prometheus(canary_and_primary())
    url = server.url

    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/-/ready", timeout=1)
    server.start()

    assert server.url == url
    assert server.query_value('sum(rate(http_requests_total{pod="web-canary"}[1m]))', at=AT) == pytest.approx(50)


@pytest.mark.slow  # waits for the first live scrape
def test_live_scrape_of_an_exporter_shows_up(start_prometheus: Start) -> None:
    with traffic.Exporter() as exporter:
        exporter.record("shop", "web-1", "200", 0.03)
        server = start_prometheus(scrape_targets=[exporter.address], scrape_interval="1s")

        value = server.wait_for_value('http_requests_total{namespace="shop", pod="web-1"}', lambda v: v == 1)

    assert value == 1


def test_scrape_targets_can_change_while_running(start_prometheus: Start) -> None:
    server = start_prometheus()

    server.set_scrape_targets(["127.0.0.1:9"])

    with urllib.request.urlopen(server.url + "/api/v1/status/config", timeout=5) as response:
        assert "127.0.0.1:9" in response.read().decode()


def test_missing_binary_tells_how_to_install_it() -> None:
    with pytest.raises(prometheus.PrometheusMissing, match="make deps"):
        prometheus.PrometheusServer(binary="/nonexistent/prometheus")


def test_failed_startup_shows_the_log(prometheus_tools: None) -> None:
    server = prometheus.PrometheusServer(extra_args=["--no-such-flag"])
    try:
        with pytest.raises(prometheus.PrometheusError, match="no-such-flag"):
            server.start()
    finally:
        server.close()
