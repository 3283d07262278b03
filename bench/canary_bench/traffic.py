"""Closed-loop traffic: simulated app versions serving requests, exported as real Prometheus metrics.

There is no cluster and no container here, so the bench plays the app itself. A `LoadGenerator` sends a
steady request rate, splits it among "arms" (pods) according to the traffic state it reads on every tick
from a `TrafficSource` (the emulated Kubernetes API, or a fixed list), decides each request's outcome from
the behaviour of the arm's container image, and records it in one real `prometheus_client` exporter.
Prometheus scrapes that exporter, so the operator judges a canary on genuine PromQL over genuine series:
when the operator shifts weight, the rates that Prometheus reports shift a scrape later.

The exported metrics follow the common app convention the operator's default queries expect:
``http_requests_total{namespace,pod,code}`` and ``http_request_duration_seconds{namespace,pod}``.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import random
import statistics
import threading
import time
import types
import urllib.error
import urllib.parse
import urllib.request
import wsgiref.simple_server
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, Self

import prometheus_client
import prometheus_client.exposition

from canary_bench import dataplane

REQUESTS_METRIC = "http_requests_total"
LATENCY_METRIC = "http_request_duration_seconds"

# prometheus_client's defaults: fine steps around the 0.25-2.5 s thresholds canary analyses usually use.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

SUCCESS_CODE = "200"
ERROR_CODE = "500"

_Z99 = statistics.NormalDist().inv_cdf(0.99)


class LatencyDistribution(Protocol):
    """How long requests of one app version take.

    Live traffic samples it; backfilled histograms use its distribution function and mean directly,
    so both paths describe an app version the same way.
    """

    def sample(self, rng: random.Random) -> float:
        """One request's duration, in seconds."""
        ...

    def share_within(self, seconds: float) -> float:
        """The share of requests that finish within `seconds` (the histogram's ``le`` bucket)."""
        ...

    def mean(self) -> float:
        """The mean duration, in seconds (what the histogram's ``_sum`` grows by per request)."""
        ...


@dataclasses.dataclass(frozen=True)
class FixedLatency:
    """Every request takes the same time."""

    seconds: float

    def sample(self, rng: random.Random) -> float:
        return self.seconds

    def share_within(self, seconds: float) -> float:
        return 1.0 if self.seconds <= seconds else 0.0

    def mean(self) -> float:
        return self.seconds


@dataclasses.dataclass(frozen=True)
class DiscreteLatency:
    """Requests take one of a few durations, each with a share: exact histograms for exact assertions."""

    points: tuple[tuple[float, float], ...]  # (seconds, share of requests)

    def __post_init__(self) -> None:
        if not self.points or any(share < 0 or seconds < 0 for seconds, share in self.points):
            raise ValueError(f"latency points need non-negative durations and shares: {self.points!r}")
        if not math.isclose(sum(share for _, share in self.points), 1.0):
            raise ValueError(f"latency shares must add up to 1: {self.points!r}")

    @classmethod
    def with_quantile(
        cls,
        value: float,
        *,
        quantile: float = 0.99,
        typical: float = 0.02,
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> DiscreteLatency:
        """Most requests take `typical`; a tail makes ``histogram_quantile(quantile, ...)`` answer `value`.

        histogram_quantile interpolates linearly inside the bucket (lo, hi] that holds the rank, so a tail
        of share s = (1 - q) / (1 - f) in that bucket, where f = (value - lo) / (hi - lo), puts the
        interpolated q-quantile exactly at `value`. The value must lie strictly inside a bucket.
        """
        bounds = (0.0, *sorted(buckets))
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            if lo < value < hi:
                break
        else:
            raise ValueError(f"{value} s is not strictly inside a latency bucket of {tuple(buckets)}")
        if typical > lo:
            raise ValueError(f"typical latency {typical} s must lie below the quantile's bucket ({lo}, {hi}]")
        tail = (1.0 - quantile) / (1.0 - (value - lo) / (hi - lo))
        return cls(((typical, 1.0 - tail), (value, tail)))

    def sample(self, rng: random.Random) -> float:
        point = rng.random()
        for seconds, share in self.points:
            point -= share
            if point < 0:
                return seconds
        return self.points[-1][0]

    def share_within(self, seconds: float) -> float:
        return sum(share for duration, share in self.points if duration <= seconds)

    def mean(self) -> float:
        return sum(duration * share for duration, share in self.points)


@dataclasses.dataclass(frozen=True)
class LognormalLatency:
    """Realistic latency: log-normal, given by its median and 99th percentile."""

    median: float
    p99: float

    def __post_init__(self) -> None:
        if not 0 < self.median < self.p99:
            raise ValueError(f"need 0 < median < p99, got median={self.median}, p99={self.p99}")

    @property
    def _normal(self) -> statistics.NormalDist:
        mu = math.log(self.median)
        return statistics.NormalDist(mu, (math.log(self.p99) - mu) / _Z99)

    def sample(self, rng: random.Random) -> float:
        normal = self._normal
        return rng.lognormvariate(normal.mean, normal.stdev)

    def share_within(self, seconds: float) -> float:
        return 0.0 if seconds <= 0 else self._normal.cdf(math.log(seconds))

    def mean(self) -> float:
        normal = self._normal
        return math.exp(normal.mean + normal.variance / 2)


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """How one version of the app behaves under load."""

    error_ratio: float = 0.0  # the share of requests answered with a 5xx
    latency: LatencyDistribution = LognormalLatency(median=0.02, p99=0.1)
    rate_multiplier: float = 1.0  # e.g. a version whose clients retry gets more requests than its weight

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_ratio <= 1.0:
            raise ValueError(f"error_ratio must be within [0, 1], got {self.error_ratio}")
        if self.rate_multiplier < 0:
            raise ValueError(f"rate_multiplier must not be negative, got {self.rate_multiplier}")


HEALTHY = Behaviour()
FAILING = Behaviour(error_ratio=0.05)
SLOW = Behaviour(latency=LognormalLatency(median=0.2, p99=0.8))

# The demo's versions, named after what goes wrong with them.
DEFAULT_IMAGES: Mapping[str, Behaviour] = types.MappingProxyType(
    {
        "example/web:1.0": HEALTHY,
        "example/web:2.0": HEALTHY,
        "example/web:2.0-errors": FAILING,
        "example/web:2.0-slow": SLOW,
    }
)


class UnknownImage(LookupError):
    """No behaviour is known for a container image and the catalogue has no default."""


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """Which behaviour each container image has; images not listed get `default` (if any)."""

    by_image: Mapping[str, Behaviour] = dataclasses.field(default_factory=lambda: DEFAULT_IMAGES)
    default: Behaviour | None = HEALTHY

    def behaviour_of(self, image: str) -> Behaviour:
        try:
            return self.by_image[image]
        except KeyError:
            if self.default is None:
                raise UnknownImage(f"no behaviour for image {image!r}") from None
            return self.default


DEFAULT_CATALOGUE = Catalogue()


@dataclasses.dataclass(frozen=True)
class Arm:
    """One pod receiving a share of the total request rate."""

    pod: str
    share: float  # the fraction of the generator's total rate; shares need not add up to 1
    image: str
    workload: str = ""  # the Deployment of the pod (a data plane's destination_workload)
    service: str = ""  # the Service the requests came through (the NGINX controller's ``service`` label)


class TrafficSourceError(Exception):
    """The traffic state could not be read right now; the generator keeps the previous arms."""


class TrafficSource(Protocol):
    """Where traffic goes right now. Called on every tick, from the generator's thread."""

    def __call__(self) -> Sequence[Arm]: ...


class ManualTrafficSource:
    """Arms set by the caller: for tests and demos that steer traffic by hand."""

    def __init__(self, arms: Sequence[Arm] = ()) -> None:
        self.arms: Sequence[Arm] = tuple(arms)

    def __call__(self) -> Sequence[Arm]:
        return self.arms


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    """No access log on stderr for every scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


# Each data plane's default latency buckets: Istio and Envoy count in milliseconds, NGINX in seconds.
ISTIO_BUCKETS_MS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000)
ENVOY_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)
NGINX_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class DataPlaneSeries:
    """The RED series a gateway or mesh reports about the requests it forwards, beside the app's own.

    - ``istio``: ``istio_requests_total`` and ``istio_request_duration_milliseconds`` as the destination's
      sidecar reports them (``reporter="destination"``, per ``destination_workload``);
    - ``nginx``: ``nginx_ingress_controller_requests`` and ``..._request_duration_seconds`` per upstream
      ``service`` of ``ingress`` (``canary`` names the canary's Service when it served the request);
    - ``envoy``: ``envoy_cluster_upstream_rq`` and ``envoy_cluster_upstream_rq_time`` (ms) per upstream
      cluster ``<namespace>_<service>_<port>``, as Envoy-based Gateway API implementations name them.
    """

    def __init__(self, kind: str, registry: prometheus_client.CollectorRegistry, *, ingress: str, port: int) -> None:
        self.kind, self.ingress, self.port = kind, ingress, port
        self._requests: prometheus_client.Counter | prometheus_client.Gauge
        if kind == "istio":
            labels = ["reporter", "destination_workload_namespace", "destination_workload", "destination_service_name"]
            self._requests = prometheus_client.Counter(
                "istio_requests", "Requests (Istio standard metric).", [*labels, "response_code"], registry=registry
            )
            self._latency = prometheus_client.Histogram(
                "istio_request_duration_milliseconds",
                "Request duration (ms).",
                labels,
                buckets=ISTIO_BUCKETS_MS,
                registry=registry,
            )
        elif kind == "nginx":
            labels = ["namespace", "ingress", "service", "canary"]
            # The controller's counter has no _total suffix, which prometheus_client adds to every Counter:
            # a Gauge only ever increased gives the exact series name, and rate() reads it the same.
            self._requests = prometheus_client.Gauge(
                "nginx_ingress_controller_requests",
                "Requests by the NGINX Ingress Controller.",
                [*labels, "status"],
                registry=registry,
            )
            self._latency = prometheus_client.Histogram(
                "nginx_ingress_controller_request_duration_seconds",
                "Request duration (s).",
                labels,
                buckets=NGINX_BUCKETS,
                registry=registry,
            )
        elif kind == "envoy":
            labels = ["envoy_cluster_name"]
            self._requests = prometheus_client.Gauge(  # no _total suffix either, as for NGINX
                "envoy_cluster_upstream_rq",
                "Upstream requests by response code.",
                [*labels, "envoy_response_code"],
                registry=registry,
            )
            self._latency = prometheus_client.Histogram(
                "envoy_cluster_upstream_rq_time",
                "Upstream request time (ms).",
                labels,
                buckets=ENVOY_BUCKETS_MS,
                registry=registry,
            )
        else:
            raise ValueError(f"unknown data plane {kind!r}: istio, nginx or envoy")

    def record(self, namespace: str, workload: str, service: str, code: str, seconds: float) -> None:
        if self.kind == "istio":
            labels = ["destination", namespace, workload, service]
            self._latency.labels(*labels).observe(seconds * 1000)
        elif self.kind == "nginx":
            labels = [namespace, self.ingress, service, service if service.endswith("-canary") else ""]
            self._latency.labels(*labels).observe(seconds)
        else:
            labels = [f"{namespace}_{service}_{self.port}"]
            self._latency.labels(*labels).observe(seconds * 1000)
        self._requests.labels(*labels, code).inc()


class Exporter:
    """The one ``/metrics`` endpoint of all simulated pods, on loopback, served from a thread.

    Real pods would each have their own endpoint and Prometheus would add the ``namespace``/``pod`` labels
    from service discovery; one endpoint with those labels in the exposition gives the same series.
    With ``data_plane`` (istio, nginx, envoy) it also serves the series that data plane reports.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        buckets: Sequence[float] = LATENCY_BUCKETS,
        data_plane: str | None = None,
        ingress: str = "web",
        service_port: int = 80,
    ):
        self.host = host
        self._requested_port = port
        self.registry = prometheus_client.CollectorRegistry()
        self._requests = prometheus_client.Counter(
            "http_requests",
            "HTTP requests served, by status code.",
            ["namespace", "pod", "code"],
            registry=self.registry,
        )
        self._latency = prometheus_client.Histogram(
            LATENCY_METRIC,
            "HTTP request duration in seconds.",
            ["namespace", "pod"],
            buckets=buckets,
            registry=self.registry,
        )
        self.data_plane = (
            None
            if data_plane is None
            else DataPlaneSeries(data_plane, self.registry, ingress=ingress, port=service_port)
        )
        self._lock = threading.Lock()
        self._codes: dict[tuple[str, str], set[str]] = {}
        self._server: wsgiref.simple_server.WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the exporter is not started")
        return int(self._server.server_port)

    @property
    def address(self) -> str:
        """``host:port``, the scrape target for Prometheus."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def start(self) -> Self:
        if self._server is None:
            app = prometheus_client.make_wsgi_app(self.registry)
            self._server = wsgiref.simple_server.make_server(
                self.host,
                self._requested_port,
                app,
                server_class=prometheus_client.exposition.ThreadingWSGIServer,
                handler_class=_QuietHandler,
            )
            # A short poll interval: stop() returns in milliseconds, not prometheus_client's 0.5 s.
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name="exporter",
                daemon=True,
            )
            self._thread.start()
            self._requested_port = self.port  # a restart keeps the scrape target's address
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def record(
        self, namespace: str, pod: str, code: str, seconds: float, *, workload: str = "", service: str = ""
    ) -> None:
        """One request served by `pod` (of Deployment `workload`, reached through Service `service`)."""
        with self._lock:
            self._codes.setdefault((namespace, pod), set()).add(code)
            self._requests.labels(namespace, pod, code).inc()
            self._latency.labels(namespace, pod).observe(seconds)
            if self.data_plane is not None and workload and service:
                self.data_plane.record(namespace, workload, service, code, seconds)

    def forget(self, namespace: str, pod: str) -> None:
        """Drop a gone pod's series, so that Prometheus marks them stale as it would for a deleted pod."""
        with self._lock:
            for code in self._codes.pop((namespace, pod), ()):
                self._requests.remove(namespace, pod, code)
            self._latency.remove(namespace, pod)

    def pods(self) -> set[tuple[str, str]]:
        """The (namespace, pod) pairs that currently have series."""
        with self._lock:
            return set(self._codes)

    def text(self) -> str:
        """The current exposition, as Prometheus would scrape it."""
        return prometheus_client.exposition.generate_latest(self.registry).decode()


@dataclasses.dataclass(frozen=True)
class ArmTally:
    """What one pod was sent, by status code: the ground truth to compare Prometheus' answers with."""

    pod: str
    image: str
    by_code: Mapping[str, int]
    # Wall-clock times of the first and the last request sent to the pod (not part of the outcome).
    first_at: float = dataclasses.field(default=0.0, compare=False)
    last_at: float = dataclasses.field(default=0.0, compare=False)

    @property
    def requests(self) -> int:
        return sum(self.by_code.values())

    @property
    def errors(self) -> int:
        return sum(count for code, count in self.by_code.items() if code.startswith("5"))


class LoadGenerator:
    """A steady request rate split among the arms of the current traffic state.

    Requests per arm accumulate fractionally (rate x share x elapsed time), so even 0.2 req/s or a 1 %
    canary weight yield the exact long-run rate; only outcomes and latencies come from the seeded RNG.
    `step()` advances by a given duration for deterministic tests; `start()` runs it on the wall clock.
    """

    def __init__(
        self,
        source: TrafficSource,
        exporter: Exporter,
        *,
        namespace: str,
        rate: float,
        catalogue: Catalogue | None = None,
        seed: int = 0,
        tick: float = 0.1,
    ) -> None:
        if rate < 0:
            raise ValueError(f"rate must not be negative, got {rate}")
        self.source = source
        self.exporter = exporter
        self.namespace = namespace
        self.rate = rate  # req/s; may be changed while running
        self.catalogue = catalogue or DEFAULT_CATALOGUE
        self.tick = tick
        self.source_errors = 0
        self.last_source_error: TrafficSourceError | None = None
        self._rng = random.Random(seed)
        self._arms: Sequence[Arm] = ()
        self._carry: dict[str, float] = {}
        self._lock = threading.Lock()
        self._tallies: dict[str, collections.Counter[str]] = {}
        self._images: dict[str, str] = {}
        self._seen: dict[str, tuple[float, float]] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: Exception | None = None

    @property
    def arms(self) -> Sequence[Arm]:
        """The traffic state used by the latest tick."""
        return self._arms

    def step(self, seconds: float) -> int:
        """Send the requests of `seconds` of traffic to the current arms; return how many were sent.

        Not to be called while the background thread runs: both would draw from the same RNG.
        """
        try:
            self._arms = tuple(self.source())
        except TrafficSourceError as e:
            self.source_errors += 1
            self.last_source_error = e
        live = {arm.pod for arm in self._arms}
        for namespace, pod in self.exporter.pods():
            if namespace == self.namespace and pod not in live:
                self.exporter.forget(namespace, pod)
        for pod in set(self._carry) - live:
            del self._carry[pod]

        sent = 0
        for arm in self._arms:
            behaviour = self.catalogue.behaviour_of(arm.image)
            due = self._carry.get(arm.pod, 0.0) + self.rate * arm.share * behaviour.rate_multiplier * seconds
            count = int(due)
            self._carry[arm.pod] = due - count
            for _ in range(count):
                code = ERROR_CODE if self._rng.random() < behaviour.error_ratio else SUCCESS_CODE
                self.exporter.record(
                    self.namespace,
                    arm.pod,
                    code,
                    behaviour.latency.sample(self._rng),
                    workload=arm.workload,
                    service=arm.service,
                )
                with self._lock:
                    self._images[arm.pod] = arm.image
                    self._tallies.setdefault(arm.pod, collections.Counter())[code] += 1
            if count:
                now = time.time()
                with self._lock:
                    self._seen[arm.pod] = (self._seen.get(arm.pod, (now, now))[0], now)
            sent += count
        return sent

    def tallies(self) -> dict[str, ArmTally]:
        """Requests sent so far, per pod (including pods that are gone)."""
        with self._lock:
            return {
                pod: ArmTally(pod, self._images[pod], dict(codes), *self._seen[pod])
                for pod, codes in self._tallies.items()
            }

    def start(self) -> Self:
        if self._thread is None:
            self._stopping.clear()
            self._failure = None
            self._thread = threading.Thread(target=self._run, name="load-generator", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread; re-raise what broke it, so a test does not pass on a dead generator."""
        if self._thread is not None:
            self._stopping.set()
            self._thread.join()
            self._thread = None
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        last = time.monotonic()
        try:
            while not self._stopping.wait(self.tick):
                now = time.monotonic()
                self.step(now - last)
                last = now
        except Exception as e:  # handed over to stop(), which re-raises it
            self._failure = e


def pod_name(deployment: str, template: Mapping[str, Any]) -> str:
    """A stable pod name per pod template: a new revision starts with fresh counters, like real pods."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return f"{deployment}-{hashlib.sha256(canonical.encode()).hexdigest()[:10]}-sim"


def ready_replicas(deployment: Mapping[str, Any]) -> int:
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)


def first_image(deployment: Mapping[str, Any]) -> str:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}]
    return str(containers[0].get("image", ""))


class KubernetesReader:
    """Read-only access to the (emulated) Kubernetes API, with the stdlib only.

    It is called from the generator's thread on every tick, so it must not share an event loop or a
    client session with the operator under test.
    """

    def __init__(self, base_url: str, *, timeout: float = 2.0, headers: Mapping[str, str] | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None if it does not exist (404)."""
        request = urllib.request.Request(
            self.base_url + path,
            headers={"Accept": "application/json", **self.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: dict[str, Any] = json.load(response)
                return body
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 404:
                return None
            raise TrafficSourceError(f"GET {path}: HTTP {e.code}") from e
        except (OSError, ValueError) as e:
            raise TrafficSourceError(f"GET {path}: {e}") from e

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        quoted = urllib.parse.quote(namespace), urllib.parse.quote(name)
        return self.get("/apis/apps/v1/namespaces/{}/deployments/{}".format(*quoted))


def deployment_arms(deployments: Mapping[str, Mapping[str, Any]]) -> list[Arm]:
    """Arms for Deployments receiving traffic by ready replicas, as a Service selecting all their pods would.

    Deployments without ready replicas get no arm. The mapping is deployment name to object; other
    sources (e.g. weights from an HTTPRoute) can reuse `pod_name()` and `first_image()` for their arms.
    """
    ready = {name: ready_replicas(body) for name, body in deployments.items()}
    total = sum(ready.values())
    return [
        Arm(
            pod=pod_name(name, body.get("spec", {}).get("template", {})),
            share=ready[name] / total,
            image=first_image(body),
        )
        for name, body in deployments.items()
        if ready[name] > 0
    ]


class ReplicasTrafficSource:
    """Traffic for the "replicas" routing: shares follow the ready replicas of ``-primary`` and ``-canary``.

    Until the operator has created either of them, the target Deployment `name` itself takes the traffic.
    """

    def __init__(self, api: KubernetesReader | str, *, namespace: str, name: str) -> None:
        self.api = api if isinstance(api, KubernetesReader) else KubernetesReader(api)
        self.namespace = namespace
        self.name = name

    def __call__(self) -> list[Arm]:
        names = (f"{self.name}-primary", f"{self.name}-canary")
        found = {name: self.api.deployment(self.namespace, name) for name in names}
        if not any(found.values()):
            found = {self.name: self.api.deployment(self.namespace, self.name)}
        return deployment_arms({name: body for name, body in found.items() if body is not None})


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


class RouteTrafficSource:
    """Traffic through the user's route, as the data plane would send it: an HTTPRoute (``gatewayAPI``),
    a VirtualService (``istio``) or an Ingress with the operator's canary Ingress (``nginx``).

    Each request class goes through the route (``dataplane``) to Services; each Service spreads its share
    over the ready pods it selects (narrowed to an Istio subset's labels), like kube-proxy. The weight the
    route names is the weight users see, whatever the replica counts. Requests routed to a Service without
    ready pods are not served (a real data plane answers 503): they appear in no arm.
    """

    def __init__(
        self,
        api: KubernetesReader | str,
        *,
        namespace: str,
        router: str,
        route: str,
        classes: Sequence[dataplane.RequestClass] = dataplane.EVERYONE,
    ) -> None:
        if router not in ("gatewayAPI", "istio", "nginx"):
            raise ValueError(f"unknown router {router!r}: gatewayAPI, istio or nginx")
        self.api = api if isinstance(api, KubernetesReader) else KubernetesReader(api)
        self.namespace = namespace
        self.router = router
        self.route = route
        self.classes = tuple(classes)

    def _get(self, path: str) -> dict[str, Any] | None:
        return self.api.get(f"/apis/{path.format(ns=urllib.parse.quote(self.namespace))}")

    def _router(self) -> Callable[[dataplane.RequestClass], dataplane.Shares]:
        """The data plane's decision for any request, from one reading of the route objects (one snapshot)."""
        if self.router == "gatewayAPI":
            route = self._get(f"gateway.networking.k8s.io/v1/namespaces/{{ns}}/httproutes/{self.route}")
            if route is None:
                raise TrafficSourceError(f"HTTPRoute {self.route} not found")
            return lambda request: dataplane.http_route_shares(route, request)
        if self.router == "istio":
            service = self._get(f"networking.istio.io/v1/namespaces/{{ns}}/virtualservices/{self.route}")
            if service is None:
                raise TrafficSourceError(f"VirtualService {self.route} not found")
            return lambda request: dataplane.virtual_service_shares(service, request)
        main = self._get(f"networking.k8s.io/v1/namespaces/{{ns}}/ingresses/{self.route}")
        if main is None:
            raise TrafficSourceError(f"Ingress {self.route} not found")
        canary = self._get(f"networking.k8s.io/v1/namespaces/{{ns}}/ingresses/{self.route}-canary")
        return lambda request: dataplane.ingress_shares(main, canary, request)

    def _subset_labels(self, service: str, subset: str) -> dict[str, str]:
        rules = self._get("networking.istio.io/v1/namespaces/{ns}/destinationrules") or {}
        for rule in rules.get("items") or []:
            if str(rule["spec"].get("host", "")).split(".", 1)[0] == service:
                for item in rule["spec"].get("subsets") or []:
                    if item.get("name") == subset:
                        return dict(item.get("labels") or {})
        raise TrafficSourceError(f"no DestinationRule subset {subset} for host {service}")

    def __call__(self) -> list[Arm]:
        route = self._router()
        deployments = (self._get("apps/v1/namespaces/{ns}/deployments") or {}).get("items") or []
        services: dict[str, dict[str, Any] | None] = {}
        arms: dict[str, Arm] = {}  # by pod: the generator keys its state by pod
        for request in self.classes:
            try:
                shares = route(request)
            except dataplane.NoRoute:
                continue
            for (service_name, subset), share in shares.items():
                if service_name not in services:
                    services[service_name] = self.api.get(
                        f"/api/v1/namespaces/{self.namespace}/services/{service_name}"
                    )
                service = services[service_name]
                if service is None or share <= 0:
                    continue
                selector = dict((service.get("spec") or {}).get("selector") or {})
                if subset is not None:
                    selector.update(self._subset_labels(service_name, subset))
                endpoints = [
                    d
                    for d in deployments
                    if ready_replicas(d) > 0
                    and _selects(
                        selector, ((d["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
                    )
                ]
                total = sum(ready_replicas(d) for d in endpoints)
                for d in endpoints:
                    name = d["metadata"]["name"]
                    pod = pod_name(name, d["spec"].get("template", {}))
                    part = request.share * share * ready_replicas(d) / total
                    known = arms.get(pod)
                    arms[pod] = Arm(
                        pod=pod,
                        share=part + (known.share if known else 0.0),
                        image=first_image(d),
                        workload=name,
                        service=service_name,
                    )
        return list(arms.values())
