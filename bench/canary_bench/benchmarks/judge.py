"""``make bench-judge``: how often each judge rolls back a healthy canary, misses a bad one, and how fast it acts.

Replays the seeded synthetic traces of ``corpus`` interval by interval through our judge
(``judging.judge`` plus the failure-streak rule of ``rollouts.checks.record``) and through the peers'
rules (``peers``), and prints one table. Nothing is timed: every figure is counted in intervals of the
trace (1 interval = 1 minute). The method, and where we lose, are in docs/judge-benchmark.md.

    python -m canary_bench.benchmarks.judge [--traces N] [--seed S] [--jobs J]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import math
import os
import statistics
import sys
import time
from collections.abc import Iterable, Sequence

from canary_bench.benchmarks import corpus, example, peers
from canary_operator import judging, measuring, models
from canary_operator.rollouts import checks

AT = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
SLOWER_THAN_MS = 500.0
RELATIVE_RATIO = 2.0  # latency-vs-primary: twice the primary's share of requests beyond its p99 edge
RELATIVE_INCREASE = 0.25  # plus a quarter of a percentage point (a ratio of nothing would allow nothing)
# Our rule as replayed: name -> (failureThreshold, failFast). The first is the default, the one the targets use.
OURS: dict[str, tuple[int, bool]] = {"ours ft=2": (2, True), "ours ft=1": (1, True), "ours no-ff": (2, False)}
DEFAULT = "ours ft=2"


def analysis(failure_threshold: int = 2, fail_fast: bool = True) -> models.Analysis:
    """Our rollout's analysis: every metric compared with the primary, nothing absolute."""
    return models.Analysis(
        interval="1m",
        failure_threshold=failure_threshold,
        fail_fast=fail_fast,
        prometheus=models.PrometheusSpec(address="http://prometheus:9090"),
        metrics=[
            models.Metric(
                name="error-rate",
                template=models.MetricTemplate.ERROR_RATE,
                compare="primary",
                max_increase=0.5,
                confidence=0.99,
            ),
            models.Metric(
                name="latency",
                template=models.MetricTemplate.LATENCY_P99,
                compare="primary",
                slower_than=SLOWER_THAN_MS,
                max_increase=1.0,
                confidence=0.99,
            ),
            models.Metric(
                name="latency-vs-primary",
                template=models.MetricTemplate.LATENCY_P99,
                compare="primary",
                max_ratio=RELATIVE_RATIO,
                max_increase=RELATIVE_INCREASE,
                confidence=0.99,
            ),
        ],
    )


ANALYSIS = analysis()
ERROR_RATE = ANALYSIS.metrics[0]  # the metric target 2 is about


def _summed(arms: Sequence[corpus.Arm]) -> dict[float, float]:
    """The cumulative buckets of several intervals together, as ``increase(...[window])`` reads them."""
    return {bound: float(sum(arm.buckets[i] for arm in arms)) for i, bound in enumerate(corpus.BUCKETS)}


def window(intervals: Sequence[corpus.Interval], label: str) -> measuring.Window:
    """Both arms' counts over ``intervals``, as ``measuring.measure`` reads them from Prometheus."""

    def tally(arms: Sequence[corpus.Arm]) -> measuring.Tally:
        requests = float(sum(a.requests for a in arms))
        return measuring.Tally(
            judging.Reading(requests), judging.Reading(float(sum(a.errors for a in arms))), _summed(arms)
        )

    return measuring.Window(
        label,
        len(intervals) * corpus.INTERVAL_SECONDS,
        tally([i.canary for i in intervals]),
        tally([i.primary for i in intervals]),
    )


def measurements(intervals: Sequence[corpus.Interval], t: int = 0) -> judging.Measurements:
    """What the operator's measuring step hands the judge at the end of interval ``t``: ``measuring.build``
    on the counts of the last window and, from the second check on, since the canary (the trace) started."""
    since = window(intervals[: t + 1], f"{t + 1}m since the canary started") if t >= 1 else None
    return measuring.build(
        ANALYSIS,
        at=AT + datetime.timedelta(seconds=corpus.INTERVAL_SECONDS * (t + 1)),
        weight=round(100 * corpus.CANARY_SHARE),
        recent={ANALYSIS.interval: window([intervals[t]], ANALYSIS.interval)},
        since_start=since,
    )


@dataclasses.dataclass(frozen=True)
class OurReplay:
    rollback: dict[str, int | None]  # per variant of ``OURS``, the interval whose check rolls back
    held: int | None  # the first check that would pause the rollout (failureThreshold 2), if before its rollback


def our_rollbacks(trace: corpus.Trace, variants: dict[str, tuple[int, bool]] = OURS) -> OurReplay:
    """Our judge on every interval, folded by the operator's own rule, ``rollouts.checks.fold_failures``.

    Per metric, a failed check adds one to its streak, a passed check resets it, an inconclusive one
    leaves it, and a decisive failure (p at or below (1 - confidence) ** failureThreshold) fills the
    streak at once (unless ``failFast`` is off); the canary rolls back as soon as any streak reaches
    the threshold.
    ``inconclusiveThreshold`` (3) inconclusive checks in a row pause the rollout (no
    ``maxStepExtension``): not a rollback, but not a promotion either, so it is reported beside the
    rollbacks.
    """
    analyses = {name: analysis(*settings) for name, settings in variants.items()}
    first: dict[str, int | None] = dict.fromkeys(variants)
    streaks: dict[str, dict[str, int]] = {name: {} for name in variants}
    unsure = 0
    held: int | None = None
    for t in range(len(trace.intervals)):
        record = judging.judge(ANALYSIS, measurements(trace.intervals, t))
        for name, (threshold, _) in variants.items():
            streaks[name] = checks.fold_failures(analyses[name], streaks[name], record)
            if first[name] is None and max(streaks[name].values(), default=0) >= threshold:
                first[name] = t
        unsure = unsure + 1 if record.verdict is models.Verdict.INCONCLUSIVE else 0
        pausing = unsure >= ANALYSIS.inconclusive_threshold
        if held is None and pausing and first.get(DEFAULT) is None:
            held = t
        if all(v is not None for v in first.values()):
            break
    return OurReplay(first, held)


PEERS: tuple[peers.Rule, ...] = (
    peers.Flagger(threshold=1),
    peers.Flagger(threshold=5),
    peers.ArgoRollouts(failure_limit=0),
    peers.ArgoRollouts(failure_limit=3),
    peers.Kayenta(),
)
HELD = "ours held"
JUDGES = tuple(OURS) + tuple(rule.name for rule in PEERS)


def replay(trace: corpus.Trace) -> dict[str, int | None]:
    """Every judge's rollback interval on one trace."""
    ours = our_rollbacks(trace)
    results: dict[str, int | None] = dict(ours.rollback)
    results[HELD] = ours.held
    for rule in PEERS:
        results[rule.name] = rule.rollback_at(trace)
    return results


def replay_row(family_name: str, traffic: float, traces: int, seed: int) -> list[dict[str, int | None]]:
    family = corpus.FAMILY[family_name]
    return [replay(corpus.generate(family, traffic, i, seed)) for i in range(traces)]


# ---------------------------------------------------------------- figures


@dataclasses.dataclass(frozen=True)
class Figures:
    """One judge on one row of traces."""

    traces: int
    rolled_back: int  # any rollback (the figure for healthy, transient and stress rows)
    early: int = 0  # regressed traces rolled back before the onset: neither a detection nor a miss
    missed: int = 0  # regressed traces never rolled back
    detect: tuple[int, ...] = ()  # intervals from the onset to the deciding check, both counted

    @property
    def reached(self) -> int:
        return self.traces - self.early

    def median_with_misses(self) -> float:
        """Median time to detect over the traces that reached the onset, a miss counting as never."""
        times = sorted([float(d) for d in self.detect] + [math.inf] * self.missed)
        return statistics.median(times) if times else math.nan


def figures(points: Iterable[int | None], onset: int | None) -> Figures:
    points = list(points)
    rolled = sum(p is not None for p in points)
    if onset is None:
        return Figures(len(points), rolled)
    early = sum(p is not None and p < onset for p in points)
    detect = tuple(sorted(p - onset + 1 for p in points if p is not None and p >= onset))
    return Figures(len(points), rolled, early=early, missed=sum(p is None for p in points), detect=detect)


def _share(value: float) -> str:
    return f"{100 * value:.2g}%" if value >= 1e-5 else "<0.001%"


def _p90(values: Sequence[int]) -> int:
    return sorted(values)[math.ceil(0.9 * len(values)) - 1]


def _pct(part: int, whole: int) -> str:
    if not whole:
        return "n/a"
    share = 100 * part / whole
    if 0 < share < 0.1:
        return "<0.1%"
    if 99 < share < 100:
        return ">99%"
    return f"{share:.0f}%" if share >= 10 or share == 0 else f"{share:.1f}%"


def cell(fig: Figures, onset: int | None) -> str:
    if onset is None:
        return _pct(fig.rolled_back, fig.traces)
    if not fig.reached:
        return "all early"
    if not fig.detect:
        return f"{_pct(fig.missed, fig.reached)} -"
    return f"{_pct(fig.missed, fig.reached)} {statistics.median(fig.detect):g}/{_p90(fig.detect)}"


def wilson_upper(part: int, whole: int, z: float = 1.96) -> float:
    """Upper end of the 95% Wilson score interval of a proportion."""
    if not whole:
        return math.nan
    p = part / whole
    centre = p + z * z / (2 * whole)
    spread = z * math.sqrt(p * (1 - p) / whole + z * z / (4 * whole * whole))
    return (centre + spread) / (1 + z * z / whole)


def render(results: dict[tuple[str, float], list[dict[str, int | None]]], traces: int, seed: int) -> list[str]:
    width = 12
    label = 22
    lines = [
        f"judge benchmark: {traces} traces per row, seed {seed}, {corpus.HORIZON} intervals of"
        f" {corpus.INTERVAL_SECONDS}s (1 interval = 1 min), canary share {corpus.CANARY_SHARE:.0%},"
        f" regressions from interval {corpus.ONSET + 1}",
        "healthy / burst / blip / stress rows: share of traces rolled back (false rollbacks)",
        "regression rows: missed share, then median/p90 intervals from onset to the deciding check (onset = 1)",
        f"'{HELD}': share of traces on which our rollout pauses ({ANALYSIS.inconclusive_threshold} inconclusive"
        " checks in a row) before any rollback",
        "",
        f"{'family':<{label}}" + "".join(f"{name:>{width}}" for name in (*JUDGES, HELD)),
    ]
    lines.append("-" * len(lines[-1]))
    healthy: dict[str, list[int]] = {name: [0, 0] for name in (*JUDGES, HELD)}
    early: dict[str, list[int]] = {name: [0, 0] for name in JUDGES}
    for family in corpus.FAMILIES:
        for traffic in family.traffic:
            rows = results[(family.name, traffic)]
            cells = []
            for name in JUDGES:
                fig = figures((r[name] for r in rows), family.onset)
                cells.append(cell(fig, family.onset))
                if family.kind == corpus.HEALTHY:
                    healthy[name][0] += fig.rolled_back
                    healthy[name][1] += fig.traces
                if family.kind == corpus.REGRESSION:
                    early[name][0] += fig.early
                    early[name][1] += fig.traces
            held = sum(r[HELD] is not None for r in rows)
            cells.append(_pct(held, len(rows)))
            if family.kind == corpus.HEALTHY:
                healthy[HELD][0] += held
                healthy[HELD][1] += len(rows)
            lines.append(f"{f'{family.name} {traffic:g}/s':<{label}}" + "".join(f"{c:>{width}}" for c in cells))
        lines.append("")
    lines.append(
        f"{'healthy+burst, overall':<{label}}" + "".join(f"{_pct(*healthy[name]):>{width}}" for name in (*JUDGES, HELD))
    )
    lines.append(f"{'regressed, before onset':<{label}}" + "".join(f"{_pct(*early[name]):>{width}}" for name in JUDGES))
    lines.append("")
    lines.extend(verdict(results, healthy[DEFAULT]))
    return lines


def fastest_test_cost(requests: int, bad_share: float, null_share: float, power: float = 0.5) -> float:
    """The least chance of failing a canary at ``null_share`` that any test on ``requests`` canary
    requests must take to fail one at ``bad_share`` with probability ``power``.

    Neyman-Pearson: the most powerful test fails from the highest error count down, randomising at
    the last count it needs. It is given the primary's share exactly and binomial errors with no
    wobble, so a real test does no better.
    """

    def pmf(share: float, k: int) -> float:
        if share <= 0:
            return 1.0 if k == 0 else 0.0
        log = math.lgamma(requests + 1) - math.lgamma(k + 1) - math.lgamma(requests - k + 1)
        return math.exp(log + k * math.log(share) + (requests - k) * math.log1p(-share))

    caught = cost = 0.0
    for k in range(requests, -1, -1):
        bad, null = pmf(bad_share, k), pmf(null_share, k)
        if caught + bad >= power:
            return cost + null * (power - caught) / bad
        caught, cost = caught + bad, cost + null
    return cost


def detection_bounds(traffic: float, intervals: int) -> tuple[float, float]:
    """For +2pp within ``intervals``, half the time: the least per-window chance of failing a canary
    at the tolerance (what ``confidence`` bounds) and a healthy one (what the benchmark counts)."""
    family = corpus.FAMILY["err +2pp"]
    requests = round(traffic * corpus.CANARY_SHARE * corpus.INTERVAL_SECONDS * intervals)
    bad = family.base_error + family.error_step
    tolerance = family.base_error + (ERROR_RATE.max_increase or 0.0) / 100
    return (
        fastest_test_cost(requests, bad, tolerance),
        fastest_test_cost(requests, bad, family.base_error),
    )


def verdict(results: dict[tuple[str, float], list[dict[str, int | None]]], healthy: list[int]) -> list[str]:
    ours, flagger = DEFAULT, "Flagger t=1"
    part, whole = healthy
    upper = wilson_upper(part, whole)
    ok = whole > 0 and part / whole <= 0.01
    lines = [
        f"target 1, <= 1% false rollbacks on healthy traces overall ({ours}): {part}/{whole} ="
        f" {100 * part / max(whole, 1):.2f}% (95% upper bound {100 * upper:.2f}%): {'MET' if ok else 'NOT MET'}"
    ]
    family = corpus.FAMILY["err +2pp"]
    levels = []
    met_all = True
    for traffic in corpus.TRAFFIC_LEVELS:
        rows = results[(family.name, traffic)]
        a = figures((r[ours] for r in rows), family.onset)
        b = figures((r[flagger] for r in rows), family.onset)
        ma, mb = a.median_with_misses(), b.median_with_misses()
        met = ma <= mb
        met_all = met_all and met
        acted = "met" if ma <= mb + 1 else "not met"
        levels.append(
            f"  {traffic:>5g} req/s: ours {ma:g} (missed {_pct(a.missed, a.reached)}) vs Flagger {mb:g}"
            f" (missed {_pct(b.missed, b.reached)}): {'met' if met else 'NOT MET'}"
            f" (counted when the rollback is carried out, Flagger one tick later: {acted})"
        )
        if math.isfinite(mb):
            for within in (int(mb), int(mb) + 1):
                at_tolerance, healthy_cost = detection_bounds(traffic, within)
                levels.append(
                    f"             the fastest possible test, to catch it within {within} interval(s) half the time,"
                    f" fails a canary at the tolerance {_share(at_tolerance)} and a healthy one"
                    f" {_share(healthy_cost)} of the time per window"
                )
    lines.append(
        f"target 2, +2pp regression detected at least as fast as {flagger} ({ours}): {'MET' if met_all else 'NOT MET'}"
    )
    lines.append("  median intervals from onset to the deciding check, a missed regression counting as never:")
    lines.append(
        f"  (our confidence {ERROR_RATE.confidence:g} allows a canary at the +{ERROR_RATE.max_increase:g}pp tolerance"
        f" to fail {100 * (1 - ERROR_RATE.confidence):g}% of checks; a trace runs {corpus.HORIZON} checks)"
    )
    lines.extend(levels)
    return lines


def run(traces: int, seed: int, jobs: int) -> dict[tuple[str, float], list[dict[str, int | None]]]:
    rows = [(family.name, traffic) for family in corpus.FAMILIES for traffic in family.traffic]
    if jobs <= 1:
        return {row: replay_row(*row, traces, seed) for row in rows}
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {row: pool.submit(replay_row, *row, traces, seed) for row in rows}
        return {row: future.result() for row, future in futures.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=200, help="traces per family and traffic level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument(
        "--example-traces", type=int, default=30, help="traces per row for examples/web.yaml's analysis (0: skip)"
    )
    parser.add_argument("--skip-compare", action="store_true", help="replay only examples/web.yaml's analysis")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    replayed = 0
    if not args.skip_compare:
        results = run(args.traces, args.seed, args.jobs)
        for line in render(results, args.traces, args.seed):
            print(line)
        replayed += len(results) * args.traces
        print()
        sys.stdout.flush()
    if args.example_traces > 0:
        examples = run_example(args.example_traces, args.seed, args.jobs)
        for line in example.render(examples, args.example_traces, args.seed):
            print(line)
        replayed += len(examples) * args.example_traces
    print(f"({replayed} traces replayed in {time.perf_counter() - began:.0f}s)", file=sys.stderr)
    return 0


def run_example(traces: int, seed: int, jobs: int) -> dict[tuple[str, float], list[example.Outcome]]:
    rows = example.rows()
    if jobs <= 1:
        return {row: example.replay_row(*row, traces, seed) for row in rows}
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {row: pool.submit(example.replay_row, *row, traces, seed) for row in rows}
        return {row: future.result() for row, future in futures.items()}


if __name__ == "__main__":
    sys.exit(main())
