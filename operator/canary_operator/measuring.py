"""Taking the measurements of one check: every metric for both arms, plus each arm's request count.

All queries of a check share one evaluation time and one window, and run
concurrently. A provider error becomes a ``Reading`` that says why the number
is missing; the judge decides what that means (never a pass).
"""

from __future__ import annotations

import asyncio
import datetime

from canary_operator import judging, models, providers, queries


async def _read(provider: providers.MetricProvider, promql: str, at: datetime.datetime) -> judging.Reading:
    try:
        return judging.Reading(await provider.query(promql, at))
    except providers.UnreachableError as exc:
        return judging.Reading.missing(judging.UNREACHABLE, str(exc))
    except providers.QueryError as exc:
        return judging.Reading.missing(judging.QUERY_REJECTED, str(exc))
    except providers.NoDataError as exc:
        return judging.Reading.missing(judging.NO_DATA, str(exc))


async def measure(
    spec: models.CanaryRolloutSpec,
    namespace: str,
    weight: int,
    at: datetime.datetime,
    provider: providers.MetricProvider,
) -> judging.Measurements:
    analysis = spec.analysis
    canary, primary = queries.arms(namespace, spec.target_ref.name)
    rendered = [
        (metric, queries.render(metric, analysis, canary), queries.render(metric, analysis, primary))
        for metric in analysis.metrics
    ]
    promqls = [queries.request_count(canary, analysis.interval), queries.request_count(primary, analysis.interval)]
    for _, canary_query, primary_query in rendered:
        promqls += [canary_query, primary_query]
    readings = await asyncio.gather(*(_read(provider, q, at) for q in promqls))
    return judging.Measurements(
        at=at,
        window=analysis.interval,
        weight=weight,
        canary_requests=readings[0],
        primary_requests=readings[1],
        metrics=[
            judging.MetricReadings(metric, canary_query, readings[2 + 2 * i], readings[3 + 2 * i])
            for i, (metric, canary_query, _) in enumerate(rendered)
        ],
    )
