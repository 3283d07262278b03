"""Whole rollouts judged on real Prometheus over backfilled data, on a controlled clock.

The cluster is played by ``helpers.World`` (the pure state machine with
instantly ready Deployments); every check is the real thing: built-in PromQL
sent to a real Prometheus at the world's clock, measured by ``measuring``,
judged by ``judging``. The data is exact, so are the outcomes.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import helpers
import pytest
from helpers import V1, V2, World

from canary_bench import prometheus, traffic
from canary_operator import judging, measuring, models, providers, rollouts
from canary_operator.providers import prometheus as prometheus_provider

Start = Callable[..., prometheus.PrometheusServer]
DATA_START = prometheus.EPOCH
DATA_END = prometheus.EPOCH + 3 * 3600
CLOCK = prometheus.EPOCH + 5400  # 1.5 h of data behind the first tick: every window is full
CANARY = "web-canary-5d6f7c8b9-abcde"
PRIMARY = "web-primary-6c7d8e9f0-fghij"

ERRORS_VS_PRIMARY = {"name": "error-rate", "template": "error-rate", "compare": "primary", "maxIncrease": 0.5}


def pod(name: str, rps: float, errors: float, start: float = DATA_START) -> list[prometheus.Series]:
    return prometheus.request_series("shop", name, start=start, end=DATA_END, step=15, rps=rps, error_ratio=errors)


def world_for(**spec: Any) -> World:
    raw = helpers.example_rollout()["spec"]
    raw["analysis"].update(interval="1m", **spec.pop("analysis", {}))
    raw.update(spec)
    world = World(spec=models.parse_spec(raw), template=V1)
    world.now = datetime.datetime.fromtimestamp(CLOCK, tz=datetime.UTC)
    world.tick()
    world.tick()
    assert world.status.phase is models.Phase.STABLE
    return world


async def run(world: World, server: prometheus.PrometheusServer, minutes: float, until: set[models.Phase]) -> None:
    """Tick every 5 s of world time, taking real checks and budget readings when due."""
    pool = prometheus_provider.Pool()
    try:
        for _ in range(int(minutes * 12)):
            provider = pool.provider(providers.Endpoint(server.url))  # one per tick, as the operator does
            check = None
            needs = rollouts.needs(world.spec, world.status, world.revision(world.template), world.now)
            if needs.check:
                since = needs.check_since
                measurements = await measuring.measure(
                    world.spec, "shop", world.status.weight, world.now, provider, since
                )
                check = judging.judge(world.spec.analysis, measurements, slo=world.spec.slo, tighten=needs.tighten)
            if needs.budget:
                budget = await measuring.error_budget(world.spec, "shop", world.now, provider)
                world.budget_remaining, world.budget_problem = budget.value, budget.detail
            world.tick(check, advance=5)
            if world.status.phase in until:
                return
    finally:
        await pool.close()


async def test_a_canary_with_2pp_more_errors_at_50_rps_is_rolled_back(backfill_prometheus: Start) -> None:
    server = backfill_prometheus(pod(CANARY, 50, 0.025) + pod(PRIMARY, 450, 0.005))
    world = world_for(analysis={"metrics": [ERRORS_VS_PRIMARY]})
    world.template = V2
    await run(world, server, minutes=10, until={models.Phase.ROLLED_BACK, models.Phase.SUCCEEDED})
    assert world.status.phase is models.Phase.ROLLED_BACK
    last = world.status.last_check
    assert last is not None
    assert last.metrics[0].reason == "error-rate 2.5% vs primary 0.5% (n=3000/27000 over 1m), +2pp > +0.5pp, p<0.001"
    assert 'code=~"5.."' in (last.metrics[0].query or "")
    release = world.status.releases[-1]
    assert release.time_to_detect_seconds is not None and release.time_to_detect_seconds <= 130


async def test_a_canary_at_1_rps_is_held_not_promoted_and_the_hold_ends_at_the_deadline(
    backfill_prometheus: Start,
) -> None:
    server = backfill_prometheus(pod(CANARY, 1, 0.005) + pod(PRIMARY, 9, 0.005))
    world = world_for(analysis={"metrics": [ERRORS_VS_PRIMARY], "maxStepExtension": "5m"})
    world.template = V2
    await run(world, server, minutes=30, until={models.Phase.PAUSED, models.Phase.SUCCEEDED})
    assert world.status.phase is models.Phase.PAUSED
    assert world.status.current_step_index == 0
    stalled = next(c for c in world.status.conditions if c.type == "Stalled")
    assert stalled.reason == "InsufficientTraffic"
    last = world.status.last_check
    assert last is not None and last.verdict is models.Verdict.INCONCLUSIVE
    needed = last.metrics[0].needed_requests
    assert needed is not None and needed > 1000
    reason = last.metrics[0].reason
    assert "since the canary started): cannot tell from +0.5pp yet" in reason, reason

    # Held, but not for ever: no conclusive check within progressDeadline (10m) gives the traffic back.
    held_at = world.now
    await run(world, server, minutes=30, until={models.Phase.ROLLED_BACK, models.Phase.SUCCEEDED})
    assert world.status.phase is models.Phase.ROLLED_BACK
    assert "no conclusive check" in (world.status.message or "") and "progressDeadline 10m" in (
        world.status.message or ""
    )
    assert "ProgressDeadlineExceeded" in world.reasons()
    assert (world.now - held_at).total_seconds() <= 10 * 60
    assert world.canary_replicas == 0


async def test_an_exhausted_error_budget_blocks_the_start(backfill_prometheus: Start) -> None:
    server = backfill_prometheus(pod(CANARY, 50, 0.005) + pod(PRIMARY, 450, 0.005))
    world = world_for(slo={"objective": 99.9, "window": "1h"})
    world.template = V2
    await run(world, server, minutes=2, until=set())
    assert world.status.phase is models.Phase.STABLE and world.canary_replicas == 0
    budget = world.status.budget
    assert budget is not None and budget.band == "exhausted" and budget.action == "blocked"
    assert budget.remaining == pytest.approx(-4.0, abs=0.01)  # a 0.5% error ratio spends 5x a 0.1% budget
    assert next(c for c in world.status.conditions if c.type == "Stalled").reason == "ErrorBudgetExhausted"


async def test_a_fast_burn_of_the_error_budget_rolls_the_canary_back(backfill_prometheus: Start) -> None:
    canary_from = CLOCK  # the canary's pods appear when it starts
    server = backfill_prometheus(pod(CANARY, 50, 0.02, start=canary_from) + pod(PRIMARY, 450, 0.0002))
    world = world_for(
        slo={"objective": 99.9, "window": "1h"},
        analysis={"metrics": [{"name": "error-rate", "template": "error-rate", "max": 5}]},
    )
    world.template = V2
    await run(world, server, minutes=10, until={models.Phase.ROLLED_BACK, models.Phase.SUCCEEDED})
    assert world.status.budget is not None and world.status.budget.band == "healthy"
    assert world.status.phase is models.Phase.ROLLED_BACK
    last = world.status.last_check
    assert last is not None
    verdicts = {m.name: m.verdict for m in last.metrics}
    assert verdicts == {"error-rate": models.Verdict.PASS, judging.BURN_RATE: models.Verdict.FAIL}
    burn = next(m for m in last.metrics if m.name == judging.BURN_RATE)
    assert burn.canary == pytest.approx(20, rel=0.05)


async def test_a_canary_slower_than_the_primary_but_under_every_fixed_bound_is_rolled_back(
    backfill_prometheus: Start,
) -> None:
    # The primary's p99 sits in the 100-250 ms bucket (1.5% of its requests take 200 ms); the canary sends
    # 6% of its requests to 400 ms: still under a 500 ms bound, but plainly slower than the primary. No
    # primary request is slower than the 250 ms edge, so only maxIncrease leaves the canary any room.
    primary_latency = traffic.DiscreteLatency(((0.02, 0.985), (0.2, 0.015)))
    canary_latency = traffic.DiscreteLatency(((0.02, 0.94), (0.4, 0.06)))
    server = backfill_prometheus(
        prometheus.request_series("shop", CANARY, start=DATA_START, end=DATA_END, rps=50, latency=canary_latency)
        + prometheus.request_series("shop", PRIMARY, start=DATA_START, end=DATA_END, rps=450, latency=primary_latency)
    )
    bounded = {"name": "latency", "template": "latency-p99", "compare": "primary", "slowerThan": 500, "maxIncrease": 1}
    relative = {
        "name": "latency-vs-primary",
        "template": "latency-p99",
        "compare": "primary",
        "maxRatio": 2,
        "maxIncrease": 0.25,
    }
    world = world_for(analysis={"metrics": [bounded, relative]})
    world.template = V2
    await run(world, server, minutes=10, until={models.Phase.ROLLED_BACK, models.Phase.SUCCEEDED})
    assert world.status.phase is models.Phase.ROLLED_BACK
    last = world.status.last_check
    assert last is not None
    verdicts = {m.name: m.verdict for m in last.metrics}
    assert verdicts == {"latency": models.Verdict.PASS, "latency-vs-primary": models.Verdict.FAIL}
    reason = next(m.reason for m in last.metrics if m.name == "latency-vs-primary")
    assert reason.startswith(
        "requests slower than 250ms (the primary's p99) 6% vs primary 0% (n=3000/27000 over 1m), +6pp > +0.25pp"
    ), reason
