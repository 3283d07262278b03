"""Seeded synthetic request traces for the judge benchmark: what each arm served, minute by minute.

Why synthetic: a judge is only as good as its error rates, and those need ground truth (which
canaries really are worse, and from when) over thousands of runs. Recorded traffic has neither.
So each trace is drawn from a small generative model whose every knob is written down here, and
each family of traces changes one thing about the canary.

One trace is ``HORIZON`` intervals of ``INTERVAL_SECONDS``. In each interval, for each arm:

- requests ~ Poisson(total rate x share x 60 s), the canary getting ``CANARY_SHARE`` of the traffic;
- 5xx ~ Binomial(requests, p), with p = base error rate x a shared multiplier x an arm multiplier
  (+ the family's effect on the canary). The multipliers are log-normal with mean 1, drawn afresh
  every interval: real error rates are overdispersed, not binomial. The shared one (sigma 0.5) is a
  flaky dependency that hits both arms alike; the arm one is bad luck of the arm's own pods: sigma
  0.25 for the canary, a third of that for the primary, whose nine times more pods average it out;
- latency: log-normal per request (median 60 ms, sigma 0.6: p99 about 250 ms, half the usual 500 ms
  limit), times a shared (sigma 0.1) and an arm (0.05 canary, a third of it primary) per-interval
  multiplier; the requests fall into the Prometheus histogram buckets ``BUCKETS`` (multinomial).

The families (``FAMILIES``) are fixed before any judge was run on them, and are not tuned to any judge.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib

import numpy as np

from canary_operator import significance

INTERVAL_SECONDS = 60
HORIZON = 30  # intervals per trace
CANARY_SHARE = 0.1
ONSET = 5  # first regressed interval (0-based): five healthy minutes come first
TRAFFIC_LEVELS = (0.5, 5.0, 50.0, 500.0)  # total req/s, both arms together
MODERATE = (10.0, 30.0, 50.0)  # where the moderate regressions are drawn
SLOTS = 6  # 10-second slots per interval, for replaying checks every 10 s
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, math.inf)

SHARED_ERROR_SIGMA = 0.5
CANARY_ERROR_SIGMA = 0.25
PRIMARY_SIGMA_FACTOR = 1 / 3  # the primary runs nine times the pods: sqrt(9) less arm noise
LATENCY_MEDIAN = 0.060
LATENCY_SIGMA = 0.6
SHARED_LATENCY_SIGMA = 0.1
CANARY_LATENCY_SIGMA = 0.05
TAIL_DELAY = 1.0  # seconds added to a tail request
BURST_ERROR = 0.05  # a burst or blip adds 5 percentage points of 5xx
BURST_LATENCY = 3.0  # and a burst in both arms triples their latency

HEALTHY = "healthy"  # should never roll back
REGRESSION = "regression"  # should roll back, soon after ONSET
TRANSIENT = "transient"  # a one-interval canary blip: rolling back is arguable, reported apart
STRESS = "stress"  # healthy, but noisier than the model above assumes: reported apart


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    kind: str
    description: str
    base_error: float = 0.001
    canary_error_sigma: float = CANARY_ERROR_SIGMA
    error_step: float = 0.0  # share added to the canary's error rate from ONSET (0.02 = +2pp)
    error_slope: float = 0.0  # share added per interval from ONSET (a drift)
    latency_scale: float = 1.0  # canary latency multiplier from ONSET
    tail_share: float = 0.0  # share of canary requests delayed by TAIL_DELAY from ONSET
    burst_both: int = 0  # intervals of an error and latency burst in both arms, at a random time
    blip_canary: int = 0  # intervals of an error spike in the canary alone, at a random time
    traffic: tuple[float, ...] = TRAFFIC_LEVELS  # the total request rates it is drawn at

    @property
    def onset(self) -> int | None:
        return ONSET if self.kind == REGRESSION else None


FAMILIES = (
    Family("healthy 0.1%", HEALTHY, "healthy canary, base error rate 0.1%"),
    Family("healthy 1%", HEALTHY, "healthy canary, base error rate 1%", base_error=0.01),
    Family("burst both", HEALTHY, "3-interval burst (+5pp 5xx, latency x3) in both arms", burst_both=3),
    Family("incident both", HEALTHY, "10-interval shared incident (+5pp 5xx, latency x3) in both arms", burst_both=10),
    Family("err +0.5pp", REGRESSION, "canary 5xx +0.5pp from ONSET", error_step=0.005),
    Family("err +2pp", REGRESSION, "canary 5xx +2pp from ONSET", error_step=0.02),
    Family("err +2pp @1%", REGRESSION, "canary 5xx +2pp from ONSET, base 1%", base_error=0.01, error_step=0.02),
    Family("err +5pp", REGRESSION, "canary 5xx +5pp from ONSET", error_step=0.05),
    Family(
        "err +2pp mod", REGRESSION, "canary 5xx +2pp from ONSET, moderate traffic", error_step=0.02, traffic=MODERATE
    ),
    Family(
        "err +3pp mod", REGRESSION, "canary 5xx +3pp from ONSET, moderate traffic", error_step=0.03, traffic=MODERATE
    ),
    Family(
        "err +4pp mod", REGRESSION, "canary 5xx +4pp from ONSET, moderate traffic", error_step=0.04, traffic=MODERATE
    ),
    Family("err drift", REGRESSION, "canary 5xx +0.25pp more each interval from ONSET", error_slope=0.0025),
    Family("lat x1.5", REGRESSION, "canary latency x1.5 from ONSET (p99 ~250 -> ~450 ms)", latency_scale=1.5),
    Family("lat x3", REGRESSION, "canary latency x3 from ONSET", latency_scale=3.0),
    Family("lat tail", REGRESSION, "3% of canary requests +1 s from ONSET", tail_share=0.03),
    Family("blip canary", TRANSIENT, "one interval of +5pp 5xx in the canary alone", blip_canary=1),
    Family(
        "flaky pods 1%", STRESS, "healthy, base 1%, canary arm noise sigma 0.6", base_error=0.01, canary_error_sigma=0.6
    ),
)
FAMILY = {family.name: family for family in FAMILIES}


@dataclasses.dataclass(frozen=True)
class Arm:
    """What one arm served in one interval (the derived figures are cached: every judge asks for them)."""

    requests: int
    errors: int
    buckets: tuple[int, ...]  # cumulative request counts per bound of BUCKETS (le); the last is all requests

    @functools.cached_property
    def cumulative(self) -> dict[float, float]:
        """The buckets as ``histogram_quantile`` and ``significance`` take them."""
        return {bound: float(count) for bound, count in zip(BUCKETS, self.buckets, strict=True)}

    @property
    def error_percent(self) -> float:
        return 100 * self.errors / self.requests if self.requests else math.nan

    @functools.cached_property
    def p99_ms(self) -> float:
        """The p99 as ``histogram_quantile(0.99, ...)`` reports it from the buckets; NaN without requests."""
        found = significance.quantile_from_buckets(self.cumulative, 0.99)
        return math.nan if found is None else 1000 * found[0]

    def slower_than(self, seconds: float) -> int:
        """Requests slower than the bucket bound at (or next above) ``seconds``."""
        return int(significance.count_above(self.cumulative, seconds)[0])


@dataclasses.dataclass(frozen=True)
class Interval:
    canary: Arm
    primary: Arm


@dataclasses.dataclass(frozen=True)
class Trace:
    family: Family
    traffic: float  # total req/s
    index: int
    intervals: tuple[Interval, ...]

    @property
    def onset(self) -> int | None:
        return self.family.onset


def _multiplier(rng: np.random.Generator, sigma: float, size: int) -> np.ndarray:
    """Log-normal factors with mean 1."""
    if sigma == 0:
        return np.ones(size)
    return np.exp(sigma * rng.standard_normal(size) - sigma**2 / 2)


_LOG_BOUNDS = np.log(np.array(BUCKETS[:-1]))
_ERF = np.vectorize(math.erf, otypes=[float])


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1 + _ERF(z / math.sqrt(2))))


def _bucket_shares(medians: np.ndarray, tail_shares: np.ndarray) -> np.ndarray:
    """Per interval, the share of requests in each bucket (not cumulative): log-normal latency plus a tail.

    A tail request takes TAIL_DELAY more than its log-normal draw.
    """
    log_medians = np.log(medians)[:, None]
    body = _normal_cdf((_LOG_BOUNDS[None, :] - log_medians) / LATENCY_SIGMA)
    shifted = np.array(BUCKETS[:-1]) - TAIL_DELAY
    with np.errstate(divide="ignore", invalid="ignore"):
        log_shifted = np.where(shifted > 0, np.log(np.where(shifted > 0, shifted, 1.0)), -np.inf)
    delayed = _normal_cdf((log_shifted[None, :] - log_medians) / LATENCY_SIGMA)
    tails = tail_shares[:, None]
    cdf = np.maximum.accumulate((1 - tails) * body + tails * delayed, axis=1)
    shares = np.diff(cdf, prepend=0.0, append=1.0, axis=1)
    shares = np.clip(shares, 0.0, None)
    return np.asarray(shares / shares.sum(axis=1, keepdims=True))


def seed_for(family: Family, traffic: float, index: int, seed: int) -> list[int]:
    """A trace's own seed: stable across runs, processes and the order traces are drawn in."""
    return [seed, zlib.crc32(family.name.encode()), int(round(traffic * 10)), index]


def generate(family: Family, traffic: float, index: int, seed: int = 0) -> Trace:
    rng = np.random.default_rng(seed_for(family, traffic, index, seed))
    t = np.arange(HORIZON)
    per_interval = traffic * INTERVAL_SECONDS
    n_canary = rng.poisson(per_interval * CANARY_SHARE, HORIZON)
    n_primary = rng.poisson(per_interval * (1 - CANARY_SHARE), HORIZON)

    shared = _multiplier(rng, SHARED_ERROR_SIGMA, HORIZON)
    p_canary = family.base_error * shared * _multiplier(rng, family.canary_error_sigma, HORIZON)
    p_primary = family.base_error * shared * _multiplier(rng, CANARY_ERROR_SIGMA * PRIMARY_SIGMA_FACTOR, HORIZON)
    shared_latency = _multiplier(rng, SHARED_LATENCY_SIGMA, HORIZON)
    latency_canary = LATENCY_MEDIAN * shared_latency * _multiplier(rng, CANARY_LATENCY_SIGMA, HORIZON)
    latency_primary = (
        LATENCY_MEDIAN * shared_latency * _multiplier(rng, CANARY_LATENCY_SIGMA * PRIMARY_SIGMA_FACTOR, HORIZON)
    )
    tail = np.zeros(HORIZON)

    onset = family.onset
    if onset is not None:
        after = t >= onset
        p_canary = p_canary + family.error_step * after + family.error_slope * (t - onset + 1) * after
        latency_canary = np.where(after, latency_canary * family.latency_scale, latency_canary)
        tail = np.where(after, family.tail_share, 0.0)
    for length, both in ((family.burst_both, True), (family.blip_canary, False)):
        if length:
            start = int(rng.integers(3, HORIZON - length - 1))
            hit = (t >= start) & (t < start + length)
            p_canary = p_canary + BURST_ERROR * hit
            if both:
                p_primary = p_primary + BURST_ERROR * hit
                latency_canary = np.where(hit, latency_canary * BURST_LATENCY, latency_canary)
                latency_primary = np.where(hit, latency_primary * BURST_LATENCY, latency_primary)

    errors_canary = rng.binomial(n_canary, np.clip(p_canary, 0.0, 1.0))
    errors_primary = rng.binomial(n_primary, np.clip(p_primary, 0.0, 1.0))
    buckets_canary = np.cumsum(rng.multinomial(n_canary, _bucket_shares(latency_canary, tail)), axis=1)
    buckets_primary = np.cumsum(rng.multinomial(n_primary, _bucket_shares(latency_primary, np.zeros(HORIZON))), axis=1)

    intervals = tuple(
        Interval(
            canary=Arm(int(n_canary[i]), int(errors_canary[i]), tuple(int(c) for c in buckets_canary[i])),
            primary=Arm(int(n_primary[i]), int(errors_primary[i]), tuple(int(c) for c in buckets_primary[i])),
        )
        for i in range(HORIZON)
    )
    return Trace(family, traffic, index, intervals)


def slots(trace: Trace) -> tuple[Interval, ...]:
    """The trace in 10-second slots (``SLOTS`` per interval), for checks every 10 s.

    Each request of an interval is put in one of its slots at random (its error and its latency
    bucket with it): the interval's rates hold for all its slots, as the generative model says.
    Seeded from the trace's own seed, so the minute-level trace is the same with or without slots.
    """
    rng = np.random.default_rng([*seed_for(trace.family, trace.traffic, trace.index, 0), 0x510])
    out: list[list[tuple[int, int, tuple[int, ...]]]] = [[] for _ in range(len(trace.intervals) * SLOTS)]
    for i, interval in enumerate(trace.intervals):
        for arm in (interval.canary, interval.primary):
            per_bucket = np.diff(np.array(arm.buckets), prepend=0)
            split = rng.multinomial(arm.requests, [1 / SLOTS] * SLOTS)
            error_split = _split(rng, arm.errors, arm.requests, split)
            remaining = per_bucket.copy()
            for k in range(SLOTS):
                size = int(split[k])
                drawn = rng.multivariate_hypergeometric(remaining, size) if size else np.zeros_like(remaining)
                remaining = remaining - drawn
                out[i * SLOTS + k].append((size, error_split[k], tuple(int(c) for c in np.cumsum(drawn))))
    return tuple(Interval(Arm(*slot[0]), Arm(*slot[1])) for slot in out)


def _split(rng: np.random.Generator, errors: int, requests: int, sizes: np.ndarray) -> list[int]:
    """How ``errors`` of ``requests`` fall into slots of ``sizes`` requests (multivariate hypergeometric)."""
    if errors == 0:
        return [0] * len(sizes)
    return [int(x) for x in rng.multivariate_hypergeometric(sizes.astype(np.int64), errors)]
