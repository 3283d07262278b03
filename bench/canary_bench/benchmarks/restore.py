"""``make bench-restore``: how fast a bad canary is taken out of traffic.

Releases several bad revisions (5% 5xx, and p99 800 ms) one after the other
through the closed loop (real operator, real Prometheus, simulated traffic)
and measures, from the load generator's own clock, the time from the first
request a bad canary served to the last one: the time users were exposed.

The floor is what the configuration allows at best: the first check can only
measure once a full window of traffic at the new weight exists, and
``failureThreshold`` consecutive failed checks are needed, so
``floor = failureThreshold x interval``, plus up to one scrape interval of
data lag and one operator tick. The figures are printed next to it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from canary_bench import stage as stages
from canary_bench import traffic


def measure(runs: int, rate: float, interval: float, threshold: int, scrape: float, tick: float) -> int:
    kinds = {"errors": traffic.FAILING, "slow": traffic.SLOW}
    catalogue = traffic.Catalogue(
        by_image={
            **traffic.DEFAULT_IMAGES,
            **{f"example/web:bad-{kind}-{i}": behaviour for kind, behaviour in kinds.items() for i in range(runs)},
        }
    )
    plan = stages.Plan(interval=f"{interval:g}s", failure_threshold=threshold)
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    floor = threshold * interval
    with stages.Stage(
        rate=rate, plan=plan, catalogue=catalogue, scrape_interval=f"{int(scrape * 1000)}ms", tick_seconds=tick
    ) as stage:
        stage.wait_phase("Stable", timeout=30)
        stage.wait_traffic()
        assert stage.load is not None
        for i in range(runs):
            for kind in kinds:
                image = f"example/web:bad-{kind}-{i}"
                outcome = stage.release(image)
                if outcome["phase"] != "RolledBack":
                    raise stages.StageError(f"{image} was not rolled back: {outcome.get('message')}")
                stage.wait_for("weight 0", lambda: stage.status().get("weight") == 0, timeout=30)
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
    print()
    print(f"time from a bad canary's first request to traffic back at 100% primary ({runs} runs each)")
    print(
        f"settings: interval {interval:g}s, failureThreshold {threshold}, scrape {scrape:g}s, tick {tick:g}s, "
        f"{rate:g} req/s, first step 20%"
    )
    print(f"floor: failureThreshold x interval = {floor:.2f}s (+ up to {scrape:g}s scrape lag + {tick:g}s tick)")
    print(f"{'canary':8} {'median':>8} {'max':>8} {'median/floor':>13}")
    for kind, values in results.items():
        median = statistics.median(values)
        print(f"{kind:8} {median:7.2f}s {max(values):7.2f}s {median / floor:12.2f}x")
    print(
        f"at Flagger-like production settings (interval 1m, threshold 2, scrape 15s) the same floor is "
        f"{2 * 60}s + up to 15s"
    )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--threshold", type=int, default=2)
    parser.add_argument("--scrape", type=float, default=0.5)
    parser.add_argument("--tick", type=float, default=0.2)
    args = parser.parse_args()
    sys.exit(measure(args.runs, args.rate, args.interval, args.threshold, args.scrape, args.tick))


if __name__ == "__main__":
    main()
