"""The whole product on one machine: emulated cluster, real Prometheus, traffic, the real operator.

``Stage`` wires the parts the closed-loop tests, ``make demo`` and the
benchmarks share:

- an ``EmulatedCluster`` (the Kubernetes API with its Deployment controller)
  holding namespace ``shop`` and the user's Deployment ``web``;
- a traffic simulator whose load generator splits requests between the pods
  the apex Service would select *right now* (read from the cluster), and an
  exporter serving the conventional RED metrics;
- a real Prometheus scraping that exporter;
- the operator, ``python -m canary_operator``, as a child process that can be
  killed and restarted;
- the user's side: ``kubectl apply`` of a CanaryRollout, ``kubectl set image``.

Everything is driven through the same interfaces a user has (kubectl, the API),
and observed the way an SRE would (status, Events, logs, Prometheus).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Self, TypeVar

import yaml
from prometheus_client import parser as prometheus_parser

from canary_bench import cluster as clusters
from canary_bench import dataplane, emulation, prometheus, traffic
from canary_operator import models

NAMESPACE = "shop"
NAME = "web"
STABLE_IMAGE = "example/web:1.0"
T = TypeVar("T")
Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def process_state(pid: int) -> str | None:
    """The state letter of a process (R, S, T, Z, ...), None once it is gone. Linux: from /proc."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def signaller(pid: int, sig: int = signal.SIGKILL, timeout: float = 5.0) -> Callable[[emulation.Request], None]:
    """A fault callback: send ``sig`` to ``pid`` and return once it took effect (dead, or stopped)."""
    settled: dict[signal.Signals, set[str | None]] = {signal.SIGKILL: {"Z", "X", None}, signal.SIGSTOP: {"T", "t"}}
    wanted = settled.get(signal.Signals(sig))

    def send(request: emulation.Request) -> None:
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while wanted is not None and process_state(pid) not in wanted:
            if time.monotonic() > deadline:
                raise StageError(f"process {pid} did not take signal {sig} within {timeout}s")
            time.sleep(0.001)

    return send


class StageError(AssertionError):
    """The stage did not reach a state in time; the message carries what it saw instead."""


@dataclasses.dataclass
class Plan:
    """The CanaryRollout the stage applies, with short intervals for closed-loop runs."""

    interval: str = "2s"
    failure_threshold: int = 2
    inconclusive_threshold: int = 3
    min_requests: int = 20
    steps: list[dict[str, Any]] = dataclasses.field(
        default_factory=lambda: [
            {"setWeight": 20},
            {"pause": {"duration": "2s"}},
            {"setWeight": 50},
            {"pause": {"duration": "2s"}},
        ]
    )
    max_error_rate: float = 1.0
    max_latency_ms: float = 500.0
    # The router, as in the spec: replicas, gatewayAPI, istio or nginx (the stage creates its route objects).
    router: str = "replicas"
    metrics: str = "app"  # trafficRouting.metrics: app, or dataPlane (the exporter then serves its series)

    continuous_interval: str = "500ms"  # about one scrape interval of the stage's Prometheus
    continuous: bool = True  # false: only the interval checks judge (the continuous test rolls back sooner)
    fail_fast: bool = True  # false: every rollback waits for failureThreshold failed checks

    def traffic_routing(self) -> dict[str, Any]:
        routers: dict[str, dict[str, Any]] = {
            "replicas": {"replicas": {}},
            "gatewayAPI": {"gatewayAPI": {"httpRoute": NAME}},
            "istio": {"istio": {"virtualService": NAME}},
            "nginx": {"nginx": {"ingress": NAME}},
        }
        routing = routers[self.router]
        return routing if self.metrics == "app" else {**routing, "metrics": self.metrics}

    def manifest(self, prometheus_url: str) -> dict[str, Any]:
        return {
            "apiVersion": "canary.dev/v1alpha1",
            "kind": "CanaryRollout",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
                "service": {"port": 80, "targetPort": 8080},
                "trafficRouting": self.traffic_routing(),
                "steps": copy.deepcopy(self.steps),
                "analysis": {
                    "interval": self.interval,
                    "failureThreshold": self.failure_threshold,
                    "inconclusiveThreshold": self.inconclusive_threshold,
                    "minRequests": self.min_requests,
                    "continuousInterval": self.continuous_interval,
                    "continuous": self.continuous,
                    "failFast": self.fail_fast,
                    "prometheus": {"address": prometheus_url, "timeout": "2s"},
                    "metrics": [
                        {"name": "error-rate", "template": "error-rate", "max": self.max_error_rate},
                        {"name": "latency-p99", "template": "latency-p99", "max": self.max_latency_ms},
                    ],
                },
            },
        }


def deployment_manifest(image: str = STABLE_IMAGE, replicas: int = 4) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"app": NAME}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {"containers": [{"name": NAME, "image": image, "ports": [{"containerPort": 8080}]}]},
            },
        },
    }


def route_manifests(router: str) -> list[dict[str, Any]]:
    """The user's own route to ``web`` for a router: what exists before the CanaryRollout is applied."""
    meta = {"name": NAME, "namespace": NAMESPACE}
    if router == "gatewayAPI":
        rule = {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [{"name": NAME, "port": 80}],
        }
        spec: dict[str, Any] = {"parentRefs": [{"name": "public"}], "hostnames": ["shop.example.com"], "rules": [rule]}
        return [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": meta, "spec": spec}]
    if router == "istio":
        route = {"name": "app", "route": [{"destination": {"host": NAME, "port": {"number": 80}}}]}
        spec = {"hosts": ["shop.example.com"], "gateways": ["public"], "http": [route]}
        return [{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": meta, "spec": spec}]
    if router == "nginx":
        backend = {"service": {"name": NAME, "port": {"number": 80}}}
        paths = [{"path": "/", "pathType": "Prefix", "backend": backend}]
        spec = {"ingressClassName": "nginx", "rules": [{"host": "shop.example.com", "http": {"paths": paths}}]}
        return [{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}]
    return []


_DATA_PLANES = {"istio": "istio", "nginx": "nginx", "gatewayAPI": "envoy"}


def _http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def parse_metrics(text: str) -> Metrics:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in prometheus_parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


def read_log_lines(log: pathlib.Path) -> list[dict[str, Any]]:
    lines = []
    for raw in log.read_text(errors="replace").splitlines() if log.exists() else []:
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


@dataclasses.dataclass
class OperatorProcess:
    """One ``python -m canary_operator`` child process, its log file and its HTTP port."""

    process: subprocess.Popen[bytes]
    log: pathlib.Path
    http_port: int

    @classmethod
    def start(cls, env: dict[str, str], log: pathlib.Path, http_port: int | None = None) -> OperatorProcess:
        port = http_port or prometheus.free_port()
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "canary_operator"],
                env={**env, "CANARY_HTTP_PORT": str(port)},
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return cls(process, log, port)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.running:
            self.process.send_signal(sig)
        self.process.wait(timeout=15)

    def metrics(self) -> Metrics:
        status, text = _http_get(self.http_port, "/metrics")
        if status != 200:
            raise StageError(f"operator /metrics answered {status}: {text[:200]}")
        return parse_metrics(text)

    def log_lines(self) -> list[dict[str, Any]]:
        return read_log_lines(self.log)


class Stage:
    def __init__(
        self,
        *,
        rate: float = 300.0,
        replicas: int = 4,
        plan: Plan | None = None,
        catalogue: traffic.Catalogue | None = None,
        scrape_interval: str = "500ms",
        tick_seconds: float = 0.2,
        seed: int = 1,
        log_format: str = "json",
        rollout: bool = True,
        keep_logs: bool = False,
        operator_env: dict[str, str] | None = None,
        request_classes: Sequence[dataplane.RequestClass] = dataplane.EVERYONE,
        peering: str | None = None,
        peering_lifetime: int = 4,
    ) -> None:
        self.rate = rate
        self.replicas = replicas
        self.plan = plan or Plan()
        self.catalogue = catalogue
        self.scrape_interval = scrape_interval
        self.tick_seconds = tick_seconds
        self.seed = seed
        self.log_format = log_format
        self.with_rollout = rollout
        self.request_classes = tuple(request_classes)  # who sends requests (headers, cookies), behind a router
        self.keep_logs = keep_logs  # leave the operator's log behind after close (the demo points at it)
        self.operator_env = dict(operator_env or {})  # more settings for the operator (config.py), at its next start
        # With a peering name, the operators run as peered replicas (only the oldest live one acts).
        self.peering = peering
        self.peering_lifetime = peering_lifetime
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="canary-stage-"))
        self.operator_log = self.workdir / "operator.log"
        self.cluster: clusters.EmulatedCluster | None = None
        self.exporter: traffic.Exporter | None = None
        self.prometheus: prometheus.PrometheusServer | None = None
        self.load: traffic.LoadGenerator | None = None
        self.operators: list[OperatorProcess] = []
        self._closers: list[Callable[[], None]] = []
        self.http_port = prometheus.free_port()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        try:
            # A stage runs for minutes: a bounded request log keeps each request as fast as the first.
            crds = [clusters.DEFAULT_CRD_PATH] + ([clusters.PEERING_CRD_PATH] if self.peering else [])
            self.cluster = clusters.EmulatedCluster(crd_paths=crds, request_log_limit=100).start()
            self._closers.append(self.cluster.stop)
            if self.peering:
                self.cluster.create(
                    "/apis/kopf.dev/v1/clusterkopfpeerings",
                    {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": self.peering}},
                )
            self.cluster.create_namespace(NAMESPACE)
            self.apply(deployment_manifest(replicas=self.replicas))
            router = self.plan.router
            for manifest in route_manifests(router):
                self.apply(manifest)
            data_plane = _DATA_PLANES.get(router) if self.plan.metrics == "dataPlane" else None
            self.exporter = traffic.Exporter(data_plane=data_plane).start()
            self._closers.append(self.exporter.stop)
            self.prometheus = prometheus.PrometheusServer(
                scrape_targets=[self.exporter.address], scrape_interval=self.scrape_interval
            ).start()
            self._closers.append(self.prometheus.close)
            source: traffic.TrafficSource = (
                traffic.ReplicasTrafficSource(self.cluster.url, namespace=NAMESPACE, name=NAME)
                if router == "replicas"
                else traffic.RouteTrafficSource(
                    self.cluster.url, namespace=NAMESPACE, router=router, route=NAME, classes=self.request_classes
                )
            )
            self.load = traffic.LoadGenerator(
                source, self.exporter, namespace=NAMESPACE, rate=self.rate, catalogue=self.catalogue, seed=self.seed
            ).start()
            self._closers.append(self.load.stop)
            self.start_operator()
            if self.with_rollout:
                self.apply(self.plan.manifest(self.prometheus.url))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.kill_operator()
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception as exc:  # keep closing the rest
                print(f"stage: closing failed: {exc!r}", file=sys.stderr)
        if not self.keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ the operator processes

    def start_operator(self, log_name: str = "operator.log") -> OperatorProcess:
        """Start one more operator process (a peer when the stage has peering) logging to ``log_name``."""
        assert self.cluster is not None
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "CANARY_TICK_SECONDS": str(self.tick_seconds),
            "CANARY_IDLE_TICK_SECONDS": str(self.tick_seconds),
            "CANARY_LOG_FORMAT": self.log_format,
            "PYTHONUNBUFFERED": "1",
            "CANARY_HTTP_HOST": "127.0.0.1",
            **self.operator_env,
            "CANARY_PEERING": self.peering or "",
            "CANARY_PEERING_LIFETIME": str(self.peering_lifetime),
        }
        process = OperatorProcess.start(env, self.workdir / log_name, self.http_port if not self.operators else None)
        self.operators.append(process)
        return process

    def kill_operator(self, sig: int = signal.SIGKILL, process: OperatorProcess | None = None) -> None:
        """Kill one operator process, or all (SIGKILL by default: no chance to clean up, as in a node failure)."""
        for victim in [process] if process is not None else list(self.operators):
            victim.kill(sig)
            self.operators.remove(victim)

    def operator_http(self, path: str, process: OperatorProcess | None = None) -> tuple[int, str]:
        """GET one of an operator's own endpoints (/metrics, /healthz, /readyz): (status, body)."""
        target = process or (self.operators[0] if self.operators else None)
        return _http_get(target.http_port if target is not None else self.http_port, path)

    def operator_metrics(self, process: OperatorProcess | None = None) -> Metrics:
        """An operator's /metrics as {(sample name, sorted labels): value}."""
        status, text = self.operator_http("/metrics", process)
        if status != 200:
            raise StageError(f"operator /metrics answered {status}: {text[:200]}")
        return parse_metrics(text)

    @property
    def operator_running(self) -> bool:
        return any(process.running for process in self.operators)

    def signaller(self, sig: int = signal.SIGKILL) -> Callable[[emulation.Request], None]:
        """A fault callback that sends ``sig`` to the operator and returns once it has taken effect.

        ``cluster.inject(Fault(..., Call(stage.signaller(), Moment.APPLIED)))`` kills the operator
        after that write is stored and before the operator can read the answer; SIGSTOP freezes it
        there (until ``os.kill(pid, SIGCONT)``).
        """
        running = [process for process in self.operators if process.running]
        if not running:
            raise StageError("the operator is not running")
        return signaller(running[0].process.pid, sig)

    def reconciles(self) -> int:
        """Ticks the running operator process has finished (ok or error) since it started."""
        metrics = self.operator_metrics()
        return int(sum(v for (name, _), v in metrics.items() if name == "canary_operator_reconciles_total"))

    def wait_ticks(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the operator has finished ``count`` more ticks: what it would still do, it has done."""
        start = self.reconciles()
        self.wait_for(f"{count} more ticks", lambda: self.reconciles() >= start + count, timeout)

    def log_lines(self, log: pathlib.Path | None = None) -> list[dict[str, Any]]:
        """An operator log's JSON lines (other lines skipped); the first operator's by default."""
        return read_log_lines(log or self.operator_log)

    # ------------------------------------------------------------ the user's side

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        assert self.cluster is not None
        return self.cluster.kubectl(*args, stdin=stdin)

    def apply(self, manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        result = self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
        if result.returncode != 0:
            raise StageError(f"kubectl apply failed: {result.stderr.strip()}")
        return result

    def set_image(self, image: str) -> None:
        result = self.kubectl("-n", NAMESPACE, "set", "image", f"deployment/{NAME}", f"{NAME}={image}")
        if result.returncode != 0:
            raise StageError(f"kubectl set image failed: {result.stderr.strip()}")

    def release(self, image: str, timeout: float = 120.0) -> dict[str, Any]:
        """``kubectl set image``, then wait for that release's verdict (Succeeded or RolledBack), its Events posted."""
        previous = self.status().get("releaseId")
        self.set_image(image)
        return self.wait_status(
            f"the release of {image} to finish",
            lambda status: status.get("releaseId") != previous and status.get("phase") in ("Succeeded", "RolledBack"),
            timeout,
            posted=True,
        )

    def delete_rollout(self) -> None:
        result = self.kubectl("-n", NAMESPACE, "delete", "canaryrollout", NAME, "--wait=false")
        if result.returncode != 0:
            raise StageError(f"kubectl delete failed: {result.stderr.strip()}")

    # ------------------------------------------------------------ observing

    def rollout(self) -> dict[str, Any] | None:
        assert self.cluster is not None
        return self.cluster.rollout(NAMESPACE, NAME)

    def status(self) -> dict[str, Any]:
        return (self.rollout() or {}).get("status") or {}

    def deployment(self, name: str) -> dict[str, Any] | None:
        assert self.cluster is not None
        return self.cluster.deployment(NAMESPACE, name)

    def service(self, name: str) -> dict[str, Any] | None:
        assert self.cluster is not None
        return self.cluster.service(NAMESPACE, name)

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        assert self.cluster is not None
        found = [
            e
            for e in self.cluster.events(NAMESPACE)
            if (e.get("involvedObject") or {}).get("name") == NAME
            and (e.get("involvedObject") or {}).get("kind") == "CanaryRollout"
        ]
        return [e for e in found if reason is None or e.get("reason") == reason]

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
        """Poll ``probe`` until it returns something truthy; fail with the rollout's state otherwise."""
        assert self.cluster is not None

        def alive_probe() -> T | None:
            for process in self.operators:
                if not process.running:
                    tail = "\n".join(process.log.read_text(errors="replace").splitlines()[-30:])
                    raise StageError(f"operator exited with {process.returncode} waiting for {what}:\n{tail}")
            return probe()

        try:
            return self.cluster.wait_for(alive_probe, timeout=timeout, interval=0.05, message=what)
        except TimeoutError as exc:
            raise StageError(f"{exc}; status: {json.dumps(self.status())}") from None

    def wait_status(
        self, what: str, accept: Callable[[dict[str, Any]], bool], timeout: float = 60.0, posted: bool = False
    ) -> dict[str, Any]:
        """The rollout's status once ``accept(status)`` holds; with ``posted``, also once the Events of what it
        records are posted (its outbox, pendingEvents, empty): an Event follows the status write, never precedes it."""

        def probe() -> dict[str, Any] | None:
            status = self.status()
            return status if accept(status) and not (posted and status.get("pendingEvents")) else None

        return self.wait_for(what, probe, timeout)

    def wait_phase(self, phase: str, timeout: float = 60.0) -> dict[str, Any]:
        """The status once in ``phase`` with the transition's Events posted (its outbox, pendingEvents, empty)."""
        return self.wait_status(f"phase {phase}", lambda status: status.get("phase") == phase, timeout, posted=True)

    def wait_traffic(self, timeout: float = 30.0) -> float:
        """Wait until Prometheus sees requests (scraping starts a few seconds after Prometheus does)."""
        assert self.prometheus is not None
        scrape = models.parse_duration(self.scrape_interval)
        window = f"{max(2.0, 4 * scrape):g}s"  # rate() needs two samples in its window
        return self.prometheus.wait_for_value(
            f'sum(rate(http_requests_total{{namespace="{NAMESPACE}"}}[{window}]))',
            lambda v: v > 0,
            timeout=max(timeout, 6 * scrape),
        )
