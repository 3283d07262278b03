"""``make bench-hostile``: what hostile "Prometheus" servers cost a healthy rollout, and the operator's memory.

One healthy rollout is checked against a real Prometheus (backfilled, the same
check the operator runs: every query of both arms) while N tenants' checks hold
their hostile servers (hanging, trickling one byte a second) for the longest
timeout there is. Printed: the healthy check's duration, p50 and p99, alone and
next to the tenants, with the connections the tenants held. Then the peak
resident memory of this process while checks stream 32 MiB answers, with the
operator's default answer limit (1 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import resource
import statistics
import sys
import time

from canary_bench import impostors, prometheus, traffic
from canary_operator import measuring, models, providers
from canary_operator.providers import prometheus as prometheus_provider

START = prometheus.EPOCH
AT = datetime.datetime.fromtimestamp(START + 600, tz=datetime.UTC)


def spec() -> models.CanaryRolloutSpec:
    metrics = [
        {"name": "error-rate", "template": "error-rate", "max": 1},
        {"name": "latency-p99", "template": "latency-p99", "max": 500},
    ]
    raw = {
        "targetRef": {"name": "web"},
        "service": {"port": 80},
        "trafficRouting": {"replicas": {}},
        "steps": [{"setWeight": 10}],
        "analysis": {"interval": "60s", "metrics": metrics},
    }
    return models.parse_spec(raw)


def series() -> list[prometheus.Series]:
    latency = traffic.DiscreteLatency.with_quantile(0.12)
    return [
        *prometheus.request_series("shop", "web-canary-6d5f7c9b8-x2k4p", start=START, end=START + 900, step=5, rps=5,
                                   error_ratio=0.004, latency=latency),
        *prometheus.request_series("shop", "web-primary-7c9d8f6b5-q8w3z", start=START, end=START + 900, step=5,
                                   rps=45, error_ratio=0.002, latency=latency),
    ]  # fmt: skip


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def healthy_checks(pool: prometheus_provider.Pool, url: str, count: int) -> list[float]:
    took = []
    for _ in range(count):
        began = time.perf_counter()
        await measuring.measure(spec(), "shop", 10, AT, pool.provider(providers.Endpoint(url)))
        took.append((time.perf_counter() - began) * 1000)
    return took


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {statistics.median(ordered):7.1f} ms   p99 {p99:7.1f} ms"


async def run(tenants: list[int], checks: int) -> None:
    with prometheus.backfilled_prometheus(series()) as server:
        pool = prometheus_provider.Pool()
        try:
            await healthy_checks(pool, server.url, 3)  # warm the connection pool
            print(f"healthy check alone ({checks} checks): {quantiles(await healthy_checks(pool, server.url, checks))}")
            for count in tenants:
                hostile = [impostors.Impostor("hang" if i % 2 else "trickle").start() for i in range(count)]
                try:
                    held = [
                        asyncio.create_task(
                            measuring.measure(spec(), f"t{i}", 10, AT, pool.provider(providers.Endpoint(h.url, 30)))
                        )
                        for i, h in enumerate(hostile)
                    ]
                    while sum(h.in_flight for h in hostile) < count * pool.concurrency:
                        await asyncio.sleep(0.01)
                    took = await healthy_checks(pool, server.url, checks)
                    still = sum(not t.done() for t in held)
                    connections = sum(h.in_flight for h in hostile)
                    print(
                        f"next to {count:3d} hostile tenants ({connections} connections held, {still} checks"
                        f" waiting): {quantiles(took)}"
                    )
                finally:
                    for h in hostile:
                        h.release()
                    await asyncio.gather(*held, return_exceptions=True)
                    for h in hostile:
                        h.stop()
            before = peak_rss_mib()
            with impostors.Impostor("huge") as huge:
                began = time.perf_counter()
                for _ in range(checks):
                    await measuring.measure(spec(), "t", 10, AT, pool.provider(providers.Endpoint(huge.url, 30)))
                per_check = (time.perf_counter() - began) / checks * 1000
            print(
                f"{checks} checks against a 32 MiB answer (limit {pool.max_response_bytes} bytes):"
                f" {per_check:.0f} ms per check, peak RSS {before:.0f} MiB -> {peak_rss_mib():.0f} MiB"
            )
        finally:
            await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench-hostile", description=__doc__)
    parser.add_argument("--tenants", type=int, nargs="+", default=[3, 30], help="hostile tenants per round")
    parser.add_argument("--checks", type=int, default=20, help="healthy checks measured per round")
    args = parser.parse_args()
    prometheus.require_binary("prometheus")
    asyncio.run(run(args.tenants, args.checks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
