"""``make bench-scale``: what N CanaryRollouts cost one operator, idle and all in a canary at once.

For each N: N Deployments and N CanaryRollouts in namespace ``scale`` of an emulated cluster,
one operator process (``python -m canary_operator``, default ticks) and a real Prometheus with
no data, so every check is inconclusive and every rollout keeps checking (``inconclusiveThreshold``
is out of reach). Then two measured windows:

- *idle*: every rollout Stable; nothing happens;
- *busy*: a new revision of every Deployment at once; every rollout at its first step, checking
  every ``interval``.

Figures: operator RSS (and the marginal RSS per rollout against the operator with none), CPU in
cores, API requests per second by verb (counted by the emulator), PromQL queries per second
(Prometheus's own counter), check lag (a check taken later than one interval after the previous
one of the same rollout, p50/p99, from the operator's log), and any missed or doubled
``CanaryStarted`` Event.

The bench must not be the bottleneck: the emulator keeps only the last few requests (kmock scans
them for each new one) and few versions per object, and the bench writes its setup straight into
the emulator's store, not through HTTP behind the operator's requests.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import json
import os
import pathlib
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

from canary_bench import cluster as clusters
from canary_bench import prometheus
from canary_bench import stage as stages

NAMESPACE = "scale"
ROLLOUTS = "canary.dev/v1alpha1/canaryrollouts"
DEPLOYMENTS = "apps/v1/deployments"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass
class Window:
    seconds: float
    rss_mb: float
    cpu_cores: float
    emulator_cpu_cores: float  # the emulated API server's thread (1.0: it is the bottleneck)
    api_per_second: dict[str, float]
    promql_per_second: float
    ticks_per_second: float  # the operator's reconcile ticks, all rollouts together
    # What the loops' sleeps waited for (canary_operator_tick_wait_seconds{until}), per second, all rollouts
    waits_per_second: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Tail:
    seconds: float  # from every rollout Stable with an empty outbox to the last API request
    requests: dict[str, int]  # by verb, in that time


@dataclasses.dataclass
class Result:
    rollouts: int
    takeover_seconds: float  # from creating them all to every rollout Stable with an empty outbox
    load_average: float  # the machine's 1-minute load average at the end (the machine is shared)
    tail: Tail
    base_rss_mb: float
    idle: Window
    busy: Window
    lag_p50: float | None
    lag_p99: float | None
    checks: int
    missed: int
    doubled: int

    @property
    def marginal_idle_kb(self) -> float:
        return (self.idle.rss_mb - self.base_rss_mb) * 1024 / self.rollouts

    @property
    def marginal_busy_kb(self) -> float:
        return (self.busy.rss_mb - self.base_rss_mb) * 1024 / self.rollouts


def deployment(i: int, image: str = "example/app:1.0") -> dict[str, Any]:
    labels = {"app": f"app-{i}"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"app-{i}", "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": image}]}},
        },
    }


def rollout(i: int, prometheus_url: str, interval: int) -> dict[str, Any]:
    return {
        "apiVersion": "canary.dev/v1alpha1",
        "kind": "CanaryRollout",
        "metadata": {"name": f"app-{i}", "namespace": NAMESPACE},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"app-{i}"},
            "service": {"port": 80, "targetPort": 8080},
            "trafficRouting": {"replicas": {}},
            "steps": [{"setWeight": 50}, {"pause": {"duration": "1h"}}],
            "analysis": {
                "interval": f"{interval}s",
                "failureThreshold": 2,
                "inconclusiveThreshold": 1000,  # the schema's most: keep checking, the busy window measures checks
                "minRequests": 50,
                "prometheus": {"address": prometheus_url, "timeout": "5s"},
                "metrics": [
                    {"name": "error-rate", "template": "error-rate", "max": 1},
                    {"name": "latency-p99", "template": "latency-p99", "max": 500},
                ],
            },
        },
    }


class Probe:
    """Reads the operator process's RSS, CPU time and ticks, the emulator's request counts, Prometheus's query count."""

    def __init__(
        self, cluster: clusters.EmulatedCluster, operator: stages.OperatorProcess, prometheus_url: str
    ) -> None:
        self.cluster, self.operator, self.prometheus_url = cluster, operator, prometheus_url
        self.pid = operator.process.pid
        self.emulator_stat = pathlib.Path(f"/proc/self/task/{cluster.call(threading.get_native_id)}/stat")

    def rss_mb(self) -> float:
        pages = int(pathlib.Path(f"/proc/{self.pid}/statm").read_text().split()[1])
        return pages * PAGE / 2**20

    def cpu_seconds(self, stat: pathlib.Path | None = None) -> float:
        fields = (stat or pathlib.Path(f"/proc/{self.pid}/stat")).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def verbs(self) -> collections.Counter[str]:
        return self.cluster.call(lambda: collections.Counter(self.cluster.emulator.verbs))

    def promql(self) -> float:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        # A Prometheus busy with hundreds of queries a second can take long to answer its own /metrics.
        with opener.open(f"{self.prometheus_url}/metrics", timeout=120) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("prometheus_http_requests_total{")
            and ('handler="/api/v1/query"' in line or 'handler="/api/v1/query_range"' in line)
        )

    def ticks(self) -> float:
        metrics = self.operator.metrics()
        return sum(v for (name, _), v in metrics.items() if name == "canary_operator_reconciles_total")

    def waits(self) -> collections.Counter[str]:
        """The sleeps so far by what they waited for (a check, a continuous reading, the resync, a change...)."""
        found: collections.Counter[str] = collections.Counter()
        for (name, labels), value in self.operator.metrics().items():
            if name == "canary_operator_tick_wait_seconds_count":
                found[dict(labels).get("until", "")] += int(value)
        return found

    def quiet(self, seconds: float, *, deadline: float) -> Tail:
        """Wait until no API request (but watches) came for ``seconds``; what came until then."""
        started = last_seen = time.monotonic()
        first = previous = self.verbs()
        while (now := time.monotonic()) - last_seen < seconds and now - started < deadline:
            time.sleep(1)
            current = self.verbs()
            if any(verb != "watch" for verb in current - previous):
                last_seen = time.monotonic()
            previous = current
        requests = self.verbs() - first
        requests.pop("watch", None)
        return Tail(seconds=last_seen - started, requests=dict(sorted(requests.items())))

    def window(self, seconds: float) -> Window:
        verbs, cpu, promql, ticks, waits = self.verbs(), self.cpu_seconds(), self.promql(), self.ticks(), self.waits()
        emulator_cpu = self.cpu_seconds(self.emulator_stat)
        started = time.monotonic()
        rss = []
        while time.monotonic() - started < seconds:
            time.sleep(1)
            rss.append(self.rss_mb())
        elapsed = time.monotonic() - started
        served = self.verbs() - verbs
        return Window(
            seconds=elapsed,
            rss_mb=max(rss),
            cpu_cores=(self.cpu_seconds() - cpu) / elapsed,
            emulator_cpu_cores=(self.cpu_seconds(self.emulator_stat) - emulator_cpu) / elapsed,
            api_per_second={verb: count / elapsed for verb, count in sorted(served.items())},
            promql_per_second=(self.promql() - promql) / elapsed,
            ticks_per_second=(self.ticks() - ticks) / elapsed,
            waits_per_second={until: n / elapsed for until, n in sorted((self.waits() - waits).items())},
        )


def _per(window: Window, n: int) -> dict[str, float]:
    return {until: 60 * rate / n for until, rate in window.waits_per_second.items()}


def _phases(cluster: clusters.EmulatedCluster) -> collections.Counter[str]:
    """Rollouts by phase; ``outbox`` counts those with Events still to post (``status.pendingEvents``)."""

    def count() -> collections.Counter[str]:
        objects = cluster.emulator.list_objects(ROLLOUTS, NAMESPACE)
        counts = collections.Counter(str((o.get("status") or {}).get("phase")) for o in objects)
        counts["outbox"] = sum(1 for o in objects if (o.get("status") or {}).get("pendingEvents"))
        return counts

    return cluster.call(count)


def _wait(cluster: clusters.EmulatedCluster, what: str, accept: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not accept(phases := _phases(cluster)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}: {dict(phases)}")
        time.sleep(1)


def _lags(log: pathlib.Path, interval: int, since: datetime.datetime) -> list[float]:
    """Per rollout, how much later than one interval after its previous check each check came."""
    taken: dict[str, list[datetime.datetime]] = collections.defaultdict(list)
    for line in stages.read_log_lines(log):
        if line.get("event") != "check" or "timestamp" not in line:
            continue
        at = datetime.datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00"))
        if at >= since:
            taken[str(line.get("rollout"))].append(at)
    return [
        max(0.0, (later - earlier).total_seconds() - interval)
        for times in taken.values()
        for earlier, later in zip(times, times[1:], strict=False)
    ]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(n: int, *, interval: int, idle_seconds: float, busy_seconds: float) -> Result:
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch,
        clusters.EmulatedCluster(request_log_limit=1, history_limit=3, ready_delay=0.5) as cluster,
        prometheus.PrometheusServer(scrape_targets=[]) as prom,
    ):
        workdir = pathlib.Path(scratch)
        cluster.create_namespace(NAMESPACE)
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "CANARY_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            "CANARY_HTTP_HOST": "127.0.0.1",
        }
        for name in ("CANARY_TICK_SECONDS", "CANARY_IDLE_TICK_SECONDS", "CANARY_PEERING"):
            env.pop(name, None)  # the operator's defaults
        operator = stages.OperatorProcess.start(env, workdir / "operator.log")
        try:
            probe = Probe(cluster, operator, prom.url)
            time.sleep(5)
            base_rss = probe.rss_mb()

            def create_all() -> None:
                for i in range(n):
                    cluster.emulator.create_object(DEPLOYMENTS, NAMESPACE, deployment(i))
                    cluster.emulator.create_object(ROLLOUTS, NAMESPACE, rollout(i, prom.url, interval))

            created = time.monotonic()
            cluster.call(create_all)
            # Idle means idle: every rollout Stable and its Event outbox empty (the takeover's last
            # writes are an Event and the patch that clears it), not the tail of the takeover.
            _wait(
                cluster,
                f"{n} rollouts Stable with no Event to post",
                lambda p: p["Stable"] == n and p["outbox"] == 0,
                timeout=120 + 3 * n,
            )
            takeover = time.monotonic() - created
            # Kopf's own part of the takeover can trail the statuses: it stores its diff base (an
            # annotation patch per rollout) as it works through the watch events of the takeover, and
            # on a loaded machine that backlog outlasts the rollouts' own writes. It is measured apart,
            # as the tail, until the API has been quiet for one interval (or for at most 10 minutes).
            tail = probe.quiet(interval, deadline=600)
            idle = probe.window(idle_seconds)

            def release_all() -> None:
                for i in range(n):
                    patch = {
                        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example/app:2"}]}}}
                    }
                    cluster.emulator.patch_object(DEPLOYMENTS, NAMESPACE, f"app-{i}", patch, patch_type="strategic")

            cluster.call(release_all)
            _wait(cluster, f"{n} rollouts Progressing", lambda p: p["Progressing"] == n, timeout=120 + 3 * n)
            time.sleep(interval)  # the first checks come one interval after the weight settles
            busy_since = datetime.datetime.now(datetime.UTC)
            busy = probe.window(busy_seconds)
            lags = _lags(operator.log, interval, busy_since)

            def started() -> collections.Counter[str]:
                events = cluster.emulator.list_objects("v1/events", NAMESPACE)
                return collections.Counter(
                    str(e["involvedObject"]["name"])
                    for e in events
                    if e.get("reason") == "CanaryStarted" and e.get("involvedObject", {}).get("kind") == "CanaryRollout"
                )

            counts = cluster.call(started)
            return Result(
                rollouts=n,
                takeover_seconds=takeover,
                load_average=os.getloadavg()[0],
                tail=tail,
                base_rss_mb=base_rss,
                idle=idle,
                busy=busy,
                lag_p50=_percentile(lags, 0.5),
                lag_p99=_percentile(lags, 0.99),
                checks=len(lags),
                missed=sum(1 for i in range(n) if counts[f"app-{i}"] == 0),
                doubled=sum(1 for i in range(n) if counts[f"app-{i}"] > 1),
            )
        finally:
            operator.kill()


def _rates(rates: dict[str, float]) -> str:
    return ", ".join(f"{verb} {rate:.1f}" for verb, rate in rates.items() if rate >= 0.05) or "0"


def report(result: Result, interval: int) -> str:
    n = result.rollouts
    idle_per_minute = sum(v for k, v in result.idle.api_per_second.items() if k != "watch") * 60 / n
    lag = (
        f"{result.lag_p50:.2f} / {result.lag_p99:.2f} s over {result.checks} checks"
        if result.lag_p50 is not None and result.lag_p99 is not None
        else "no checks"
    )
    return "\n".join(
        [
            f"N={n} (interval {interval}s; load average {result.load_average:.2f};"
            f" all Stable with empty outboxes {result.takeover_seconds:.0f} s after creation)",
            f"  takeover's tail after that: {result.tail.seconds:.0f} s, requests {result.tail.requests or 0}",
            f"  RSS: none {result.base_rss_mb:.0f} MB, idle {result.idle.rss_mb:.0f} MB"
            f" (+{result.marginal_idle_kb:.0f} KB/rollout), busy {result.busy.rss_mb:.0f} MB"
            f" (+{result.marginal_busy_kb:.0f} KB/rollout)",
            f"  CPU: idle {result.idle.cpu_cores:.3f}, busy {result.busy.cpu_cores:.3f} cores"
            f" (the emulator: idle {result.idle.emulator_cpu_cores:.3f}, busy {result.busy.emulator_cpu_cores:.3f})",
            f"  API req/s idle: {_rates(result.idle.api_per_second)}"
            f"  ({idle_per_minute:.2f} requests per rollout per minute)",
            f"  API req/s busy: {_rates(result.busy.api_per_second)}",
            f"  PromQL/s: idle {result.idle.promql_per_second:.1f}, busy {result.busy.promql_per_second:.1f}",
            f"  ticks per rollout per second: idle {result.idle.ticks_per_second / n:.3f},"
            f" busy {result.busy.ticks_per_second / n:.3f}",
            f"  sleeps per rollout per minute, by what they waited for: idle {_rates(_per(result.idle, n))};"
            f" busy {_rates(_per(result.busy, n))}",
            f"  check lag p50/p99 (taken vs due): {lag}",
            f"  CanaryStarted missed: {result.missed}, doubled: {result.doubled}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[50, 200, 500])
    parser.add_argument("--interval", type=int, default=10, help="analysis interval, seconds")
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--busy-seconds", type=float, default=40)
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = parser.parse_args(argv)
    prometheus.require_binary("prometheus")
    results = []
    for n in args.sizes:
        result = measure(n, interval=args.interval, idle_seconds=args.idle_seconds, busy_seconds=args.busy_seconds)
        results.append(result)
        print(report(result, args.interval), flush=True)
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
