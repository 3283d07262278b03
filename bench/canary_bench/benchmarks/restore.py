"""``make bench-restore``: how fast a bad canary is taken out of traffic.

Releases several bad revisions (5% 5xx, and p99 800 ms) one after the other
through the closed loop (real operator, real Prometheus, simulated traffic)
and measures, from the load generator's own clock, the time from the first
request a bad canary served to the last one: the time users were exposed.

Two floors are printed beside each figure. The information floor is what any
sound rule needs: the canary requests a sequential probability ratio test at
alpha = beta = 1% needs on average to tell the bad canary's true share of bad
requests from the limit (Wald's approximation), divided by the canary's request
rate, plus one scrape interval for the data to reach Prometheus. The check
floor is what interval checks alone allow: ``failureThreshold x interval``; the
continuous test is there to get below it.

``--production`` runs the settings teams run (interval 1m, failureThreshold 2,
scrape 15s, continuous test every 15s); the default is the fast settings.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

from canary_bench import stage as stages
from canary_bench import traffic


def sprt_requests(bad: float, limit: float, alpha: float = 0.01, beta: float = 0.01) -> float:
    """Wald's expected sample size of the SPRT of ``limit`` against ``bad`` when the share is ``bad``."""
    per_request = bad * math.log(bad / limit) + (1 - bad) * math.log((1 - bad) / (1 - limit))
    upper, lower = math.log((1 - beta) / alpha), math.log(beta / (1 - alpha))
    return ((1 - beta) * upper + beta * lower) / per_request


def bad_share(kind: str) -> float:
    """The bad canary's true share of requests beyond the stage's limits (5xx over 1%, slower than 500 ms over 1%)."""
    behaviour = {"errors": traffic.FAILING, "slow": traffic.SLOW}[kind]
    if kind == "errors":
        return behaviour.error_ratio
    latency = behaviour.latency
    assert isinstance(latency, traffic.LognormalLatency)
    return 1 - latency.share_within(stages.Plan().max_latency_ms / 1000)


def measure(
    runs: int, rate: float, interval: float, threshold: int, scrape: float, tick: float, continuous: float
) -> int:
    kinds = {"errors": traffic.FAILING, "slow": traffic.SLOW}
    catalogue = traffic.Catalogue(
        by_image={
            **traffic.DEFAULT_IMAGES,
            **{f"example/web:bad-{kind}-{i}": behaviour for kind, behaviour in kinds.items() for i in range(runs)},
        }
    )
    plan = stages.Plan(
        interval=f"{interval:g}s", failure_threshold=threshold, continuous_interval=f"{int(continuous * 1000)}ms"
    )
    weight = plan.steps[0]["setWeight"] / 100
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    with stages.Stage(
        rate=rate, plan=plan, catalogue=catalogue, scrape_interval=f"{int(scrape * 1000)}ms", tick_seconds=tick
    ) as stage:
        stage.wait_phase("Stable", timeout=30)
        stage.wait_traffic()
        assert stage.load is not None
        for i in range(runs):
            for kind in kinds:
                image = f"example/web:bad-{kind}-{i}"
                outcome = stage.release(image, timeout=max(60.0, 10 * interval * threshold))
                if outcome["phase"] != "RolledBack":
                    raise stages.StageError(f"{image} was not rolled back: {outcome.get('message')}")
                stage.wait_for("weight 0", lambda: stage.status().get("weight") == 0, timeout=30 + 2 * scrape)
                time.sleep(0.5)  # let the generator's last ticks land before reading its clock
                tally = next(
                    t for t in stage.load.tallies().values() if t.image == image and t.pod.startswith("web-canary-")
                )
                exposed = tally.last_at - tally.first_at
                results[kind].append(exposed)
                print(
                    f"  run {i + 1} {kind:6}: exposed {exposed:5.2f}s, {tally.requests} requests "
                    f"({tally.errors} errors) reached the bad canary",
                    flush=True,
                )
    checks_floor = threshold * interval
    print()
    print(f"time from a bad canary's first request to traffic back at 100% primary ({runs} runs each)")
    print(
        f"settings: interval {interval:g}s, failureThreshold {threshold}, scrape {scrape:g}s, continuous test every"
        f" {continuous:g}s, tick {tick:g}s, {rate:g} req/s, first step {weight:.0%}"
    )
    print(
        "information floor: SPRT requests at alpha = beta = 1% (bad share against the 1% limit) / canary req/s"
        f" + one scrape ({scrape:g}s); check floor: failureThreshold x interval = {checks_floor:g}s"
    )
    print(f"{'canary':8} {'bad share':>9} {'SPRT n':>7} {'floor':>7} {'median':>8} {'max':>8} {'median/floor':>13}")
    for kind, values in results.items():
        share = bad_share(kind)
        needed = sprt_requests(share, 0.01)
        floor = needed / (rate * weight) + scrape
        median = statistics.median(values)
        print(
            f"{kind:8} {share:9.1%} {needed:7.0f} {floor:6.2f}s {median:7.2f}s {max(values):7.2f}s"
            f" {median / floor:12.2f}x"
        )
    return 0


PRODUCTION = {"interval": 60.0, "threshold": 2, "scrape": 15.0, "tick": 5.0, "continuous": 15.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--threshold", type=int, default=2)
    parser.add_argument("--scrape", type=float, default=0.5)
    parser.add_argument("--tick", type=float, default=0.2)
    parser.add_argument("--continuous", type=float, default=0.5, help="seconds between continuous tests")
    parser.add_argument(
        "--production",
        action="store_true",
        help="interval 1m, failureThreshold 2, scrape 15s, continuous test every 15s, tick 5s",
    )
    args = parser.parse_args()
    settings = {
        "interval": args.interval,
        "threshold": args.threshold,
        "scrape": args.scrape,
        "tick": args.tick,
        "continuous": args.continuous,
    }
    if args.production:
        settings.update(PRODUCTION)
    sys.exit(measure(args.runs, args.rate, **settings))


if __name__ == "__main__":
    main()
