"""The traffic simulator: requests split by weight, outcomes by version, series that come and go."""

from __future__ import annotations

import http.server
import json
import random
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import parser

from canary_bench import prometheus, traffic

NS = "shop"
PRIMARY = traffic.Arm(pod="web-primary-sim", share=0.9, image="example/web:1.0")
CANARY = traffic.Arm(pod="web-canary-sim", share=0.1, image="example/web:2.0-errors")


@pytest.fixture
def exporter() -> Iterator[traffic.Exporter]:
    with traffic.Exporter() as exporter:
        yield exporter


def scraped(exporter: traffic.Exporter) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The exporter's samples over HTTP, as Prometheus would read them: (name, labels) -> value."""
    with urllib.request.urlopen(exporter.url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


def pods_in(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> set[str]:
    return {dict(labels)["pod"] for _, labels in samples}


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until the condition holds; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition still false after {timeout} s"
        time.sleep(0.01)


def test_requests_split_by_weight_and_fail_by_version(exporter: traffic.Exporter) -> None:
    source = traffic.ManualTrafficSource([PRIMARY, CANARY])
    generator = traffic.LoadGenerator(source, exporter, namespace=NS, rate=100, seed=1)

    for _ in range(100):
        generator.step(1.0)

    tallies = generator.tallies()
    assert tallies[PRIMARY.pod].requests == 9000
    assert tallies[CANARY.pod].requests == 1000
    assert tallies[PRIMARY.pod].errors == 0
    assert tallies[CANARY.pod].errors == pytest.approx(50, abs=25)  # 5 %, binomial sd about 7


def test_same_seed_gives_the_same_outcomes(exporter: traffic.Exporter) -> None:
    def run(seed: int) -> dict[str, traffic.ArmTally]:
        generator = traffic.LoadGenerator(
            traffic.ManualTrafficSource([CANARY]),
            exporter,
            namespace=NS,
            rate=1000,
            seed=seed,
        )
        generator.step(1.0)
        return generator.tallies()

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_low_rates_accumulate_into_whole_requests(exporter: traffic.Exporter) -> None:
    source = traffic.ManualTrafficSource([traffic.Arm("web-sim", 1.0, "example/web:1.0")])
    generator = traffic.LoadGenerator(source, exporter, namespace=NS, rate=0.2)

    sent = [generator.step(0.1) for _ in range(100)]  # 10 s at 0.2 req/s

    assert sum(sent) == 2


def test_rate_multiplier_scales_a_versions_requests(exporter: traffic.Exporter) -> None:
    catalogue = traffic.Catalogue({"retrying:1": traffic.Behaviour(rate_multiplier=3.0)})
    source = traffic.ManualTrafficSource([traffic.Arm("web-sim", 0.5, "retrying:1")])
    generator = traffic.LoadGenerator(source, exporter, namespace=NS, rate=10, catalogue=catalogue)

    assert generator.step(2.0) == 30


def test_exporter_serves_the_red_series_of_each_pod(exporter: traffic.Exporter) -> None:
    generator = traffic.LoadGenerator(
        traffic.ManualTrafficSource([PRIMARY, CANARY]),
        exporter,
        namespace=NS,
        rate=100,
        seed=1,
    )
    generator.step(10.0)
    canary = generator.tallies()[CANARY.pod]

    samples = scraped(exporter)

    labels = (("code", "500"), ("namespace", NS), ("pod", CANARY.pod))
    assert samples[("http_requests_total", labels)] == canary.errors
    count_labels = (("namespace", NS), ("pod", CANARY.pod))
    assert samples[("http_request_duration_seconds_count", count_labels)] == canary.requests
    inf_bucket = (("le", "+Inf"), ("namespace", NS), ("pod", CANARY.pod))
    assert samples[("http_request_duration_seconds_bucket", inf_bucket)] == canary.requests


def test_a_pod_that_leaves_the_traffic_loses_its_series(exporter: traffic.Exporter) -> None:
    source = traffic.ManualTrafficSource([PRIMARY, CANARY])
    generator = traffic.LoadGenerator(source, exporter, namespace=NS, rate=100)
    generator.step(1.0)

    source.arms = [traffic.Arm(PRIMARY.pod, 1.0, PRIMARY.image)]
    generator.step(1.0)

    assert pods_in(scraped(exporter)) == {PRIMARY.pod}
    assert generator.tallies()[CANARY.pod].requests == 10  # the tally keeps the history


def test_unknown_image_stops_the_generator_loudly(exporter: traffic.Exporter) -> None:
    source = traffic.ManualTrafficSource([traffic.Arm("web-sim", 1.0, "example/other:1")])
    catalogue = traffic.Catalogue(default=None)
    generator = traffic.LoadGenerator(source, exporter, namespace=NS, rate=100, catalogue=catalogue, tick=0.01)

    generator.start()
    eventually(lambda: not generator.running)

    with pytest.raises(traffic.UnknownImage, match="example/other:1"):
        generator.stop()


def test_background_thread_sends_requests_on_the_wall_clock(exporter: traffic.Exporter) -> None:
    source = traffic.ManualTrafficSource([traffic.Arm("web-sim", 1.0, "example/web:1.0")])

    with traffic.LoadGenerator(source, exporter, namespace=NS, rate=200, tick=0.05) as generator:
        eventually(lambda: "web-sim" in generator.tallies() and generator.tallies()["web-sim"].requests >= 50)


def test_source_errors_keep_the_previous_traffic(exporter: traffic.Exporter) -> None:
    arms = [[traffic.Arm("web-sim", 1.0, "example/web:1.0")]]

    def flaky() -> list[traffic.Arm]:
        if not arms:
            raise traffic.TrafficSourceError("API unreachable")
        return arms.pop()

    generator = traffic.LoadGenerator(flaky, exporter, namespace=NS, rate=10)
    generator.step(1.0)
    generator.step(1.0)

    assert generator.tallies()["web-sim"].requests == 20
    assert generator.source_errors == 1


def test_lognormal_latency_has_the_given_median_and_p99() -> None:
    latency = traffic.LognormalLatency(median=0.05, p99=0.8)
    rng = random.Random(3)

    durations = sorted(latency.sample(rng) for _ in range(20000))

    assert statistics.median(durations) == pytest.approx(0.05, rel=0.05)
    assert durations[int(0.99 * len(durations))] == pytest.approx(0.8, rel=0.1)
    assert latency.share_within(0.8) == pytest.approx(0.99)


# The replicas TrafficSource, against a fake Kubernetes API serving Deployments.

Objects = dict[str, dict[str, Any]]


@pytest.fixture
def kubernetes() -> Iterator[tuple[str, Objects]]:
    """A loopback HTTP server answering GETs from a dict of path -> object, 404 otherwise."""
    objects: Objects = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = objects.get(self.path)
            payload = json.dumps(body if body is not None else {"kind": "Status", "code": 404}).encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", objects
    server.shutdown()
    server.server_close()
    thread.join()


def deployment(name: str, image: str, ready: int | None) -> tuple[str, dict[str, Any]]:
    """A Deployment as the API serves it; `ready=None` omits readyReplicas, as Kubernetes does for 0."""
    template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "web", "image": image}]}}
    status = {"readyReplicas": ready} if ready is not None else {}
    body = {"metadata": {"name": name, "namespace": NS}, "spec": {"template": template}, "status": status}
    return f"/apis/apps/v1/namespaces/{NS}/deployments/{name}", body


def shares(arms: list[traffic.Arm]) -> dict[str, tuple[float, str]]:
    return {arm.pod.rsplit("-", 2)[0]: (arm.share, arm.image) for arm in arms}


def test_replicas_source_shares_traffic_by_ready_replicas(kubernetes: tuple[str, Objects]) -> None:
    url, objects = kubernetes
    objects.update([deployment("web-primary", "example/web:1.0", 3), deployment("web-canary", "example/web:2.0", 1)])

    arms = traffic.ReplicasTrafficSource(url, namespace=NS, name="web")()

    assert shares(arms) == {"web-primary": (0.75, "example/web:1.0"), "web-canary": (0.25, "example/web:2.0")}


def test_replicas_source_names_pods_after_the_pod_template(kubernetes: tuple[str, Objects]) -> None:
    url, objects = kubernetes
    path, canary = deployment("web-canary", "example/web:2.0", 1)
    objects[path] = canary
    source = traffic.ReplicasTrafficSource(url, namespace=NS, name="web")
    before = source()[0].pod
    expected = traffic.pod_name("web-canary", json.loads(json.dumps(canary["spec"]["template"])))

    canary["spec"]["template"]["spec"]["containers"][0]["image"] = "example/web:2.1"
    after = source()[0].pod

    assert before.startswith("web-canary-") and before.endswith("-sim")
    assert before == expected
    assert after != before


def test_replicas_source_skips_unready_and_missing_deployments(kubernetes: tuple[str, Objects]) -> None:
    url, objects = kubernetes
    objects.update([deployment("web-primary", "example/web:1.0", 2), deployment("web-canary", "example/web:2.0", None)])

    arms = traffic.ReplicasTrafficSource(url, namespace=NS, name="web")()

    assert shares(arms) == {"web-primary": (1.0, "example/web:1.0")}


def test_replicas_source_sends_traffic_to_the_target_before_the_operator_takes_over(
    kubernetes: tuple[str, Objects],
) -> None:
    url, objects = kubernetes
    objects.update([deployment("web", "example/web:1.0", 2)])
    source = traffic.ReplicasTrafficSource(url, namespace=NS, name="web")

    assert shares(source()) == {"web": (1.0, "example/web:1.0")}

    objects.update([deployment("web-primary", "example/web:1.0", 0)])

    assert source() == []


def test_replicas_source_reports_an_unreachable_api_as_a_source_error() -> None:
    port = prometheus.free_port()
    source = traffic.ReplicasTrafficSource(f"http://127.0.0.1:{port}", namespace=NS, name="web")

    with pytest.raises(traffic.TrafficSourceError):
        source()


# The closed loop: generator -> exporter -> real Prometheus.


@pytest.mark.slow  # waits for live scrapes
def test_prometheus_sees_the_generated_rate_and_forgets_gone_pods(
    exporter: traffic.Exporter,
    start_prometheus: Callable[..., prometheus.PrometheusServer],
) -> None:
    source = traffic.ManualTrafficSource([traffic.Arm("web-smoke-sim", 1.0, "example/web:1.0")])
    server = start_prometheus(scrape_targets=[exporter.address], scrape_interval="1s")
    with traffic.LoadGenerator(source, exporter, namespace=NS, rate=50, tick=0.05):
        # The first answers come from a half-filled window and read low; once full they settle near 50.
        server.wait_for_value('sum(rate(http_requests_total{pod="web-smoke-sim"}[5s]))', lambda v: 30 <= v <= 70)

        source.arms = []
        server.wait_for_value('count(http_requests_total{pod="web-smoke-sim"}) or vector(0)', lambda n: n == 0)
