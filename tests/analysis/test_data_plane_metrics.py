"""The built-in templates on each data plane's own series (trafficRouting.metrics: dataPlane), measured by the
operator on a real Prometheus over backfilled data: exact error rates, and a p99 that is histogram_quantile over
the data plane's buckets (Istio's and Envoy's in milliseconds, NGINX's in seconds), never a mean."""

from __future__ import annotations

import copy
import datetime
import math
from collections.abc import Callable, Mapping
from typing import Any

import helpers
import pytest

from canary_bench import prometheus, traffic
from canary_operator import judging, measuring, models, providers
from canary_operator.providers import prometheus as prometheus_provider

Start = Callable[..., prometheus.PrometheusServer]
START = prometheus.EPOCH
END = prometheus.EPOCH + 3600
AT = datetime.datetime.fromtimestamp(START + 1800, tz=datetime.UTC)
SLOW = 0.3  # the canary's p99, in seconds: inside a bucket of every data plane


def plane_series(
    plane: str, workload: str, service: str, rps: float, errors: float, latency: traffic.LatencyDistribution
) -> list[prometheus.Series]:
    """What the data plane would have reported for one arm serving ``rps`` steadily."""
    times = [START + 15 * i for i in range(int((END - START) / 15) + 1)]
    bounds: tuple[float, ...]
    if plane == "istio":
        labels: Mapping[str, str] = {
            "reporter": "destination",
            "destination_workload_namespace": "shop",
            "destination_workload": workload,
        }
        requests, code, buckets, unit, bounds = (
            "istio_requests_total",
            "response_code",
            "istio_request_duration_milliseconds",
            0.001,
            traffic.ISTIO_BUCKETS_MS,
        )
    elif plane == "nginx":
        labels = {"namespace": "shop", "ingress": "web", "service": service}
        requests, code, buckets, unit, bounds = (
            "nginx_ingress_controller_requests",
            "status",
            "nginx_ingress_controller_request_duration_seconds",
            1.0,
            traffic.NGINX_BUCKETS,
        )
    else:
        labels = {"envoy_cluster_name": f"shop_{service}_80"}
        requests, code, buckets, unit, bounds = (
            "envoy_cluster_upstream_rq",
            "envoy_response_code",
            "envoy_cluster_upstream_rq_time",
            0.001,
            traffic.ENVOY_BUCKETS_MS,
        )
    kind: Any = "counter" if requests.endswith("_total") else "gauge"

    def grow(name: str, extra: Mapping[str, str], share: float, of: Any) -> prometheus.Series:
        return prometheus.Series(name, {**labels, **extra}, [(t, rps * share * (t - START)) for t in times], of)

    series = [
        grow(requests, {code: c}, share, kind) for c, share in (("200", 1 - errors), ("503", errors)) if share > 0
    ]
    for bound in (*bounds, math.inf):
        le = "+Inf" if math.isinf(bound) else repr(float(bound))
        share = 1.0 if math.isinf(bound) else latency.share_within(bound * unit)
        series.append(grow(f"{buckets}_bucket", {"le": le}, share, "histogram"))
    series.append(grow(f"{buckets}_count", {}, 1.0, "histogram"))
    series.append(grow(f"{buckets}_sum", {}, latency.mean() / unit, "histogram"))
    return series


ROUTING = {
    "istio": {"istio": {"virtualService": "web"}, "metrics": "dataPlane"},
    "nginx": {"nginx": {"ingress": "web"}, "metrics": "dataPlane"},
    "envoy": {"gatewayAPI": {"httpRoute": "web"}, "metrics": "dataPlane"},
}
PRIMARY_SERVICE = {"istio": "web-primary", "nginx": "web", "envoy": "web-primary"}
BOUNDS = {
    "istio": [b / 1000 for b in traffic.ISTIO_BUCKETS_MS],
    "nginx": list(traffic.NGINX_BUCKETS),
    "envoy": [b / 1000 for b in traffic.ENVOY_BUCKETS_MS],
}


def spec_for(plane: str) -> models.CanaryRolloutSpec:
    raw = copy.deepcopy(helpers.example_rollout()["spec"])
    raw["trafficRouting"] = ROUTING[plane]
    raw["analysis"]["interval"] = "1m"
    raw["analysis"]["metrics"] = [
        {"name": "errors", "template": "error-rate", "max": 1},
        {"name": "p99", "template": "latency-p99", "max": 500},
        {"name": "errors-vs-primary", "template": "error-rate", "compare": "primary", "maxIncrease": 0.5},
    ]
    return models.parse_spec(raw)


@pytest.mark.parametrize("plane", ["istio", "nginx", "envoy"])
async def test_the_data_planes_series_give_exact_error_rates_and_a_histogram_p99(
    backfill_prometheus: Start, plane: str
) -> None:
    slow = traffic.DiscreteLatency.with_quantile(SLOW, buckets=BOUNDS[plane])
    server = backfill_prometheus(
        plane_series(plane, "web-canary", "web-canary", 20, 0.02, slow)
        + plane_series(plane, "web-primary", PRIMARY_SERVICE[plane], 180, 0.005, traffic.FixedLatency(0.02))
    )
    spec = spec_for(plane)
    pool = prometheus_provider.Pool()
    try:
        measurements = await measuring.measure(spec, "shop", 10, AT, pool.provider(providers.Endpoint(server.url)))
    finally:
        await pool.close()
    check = judging.judge(spec.analysis, measurements)

    assert measurements.canary_requests.value == pytest.approx(1200)
    assert measurements.primary_requests.value == pytest.approx(10800)
    results = {m.name: m for m in check.metrics}
    assert results["errors"].canary == pytest.approx(2.0) and results["errors"].primary == pytest.approx(0.5)
    assert results["p99"].canary == pytest.approx(300.0), "histogram_quantile, in ms whatever the histogram's unit"
    assert results["errors-vs-primary"].verdict is models.Verdict.FAIL
    assert check.verdict is models.Verdict.FAIL
    assert "histogram_quantile(0.99" in (results["p99"].query or "")


def test_app_metrics_stay_the_default_and_the_replicas_router_has_no_data_plane() -> None:
    raw: dict[str, Any] = copy.deepcopy(helpers.example_rollout()["spec"])
    assert models.parse_spec(raw).traffic_routing.metrics == "app"
    raw["trafficRouting"] = {"replicas": {}, "metrics": "dataPlane"}
    with pytest.raises(ValueError, match="the replicas router has no data plane"):
        models.parse_spec(raw)
