"""Metric providers: where measurements come from, behind one small Protocol.

A provider answers one instant query with one number, or raises a typed error
saying why it cannot. The judge turns those errors into *inconclusive*
verdicts: a missing number is never a pass.
"""

from __future__ import annotations

import datetime
import functools
from typing import Protocol

from canary_operator import models


class MetricsError(Exception):
    """A measurement could not be taken."""


class NoDataError(MetricsError):
    """The query ran but returned no sample (or NaN)."""


class UnreachableError(MetricsError):
    """The provider did not answer (connection refused, timeout, 5xx)."""


class QueryError(MetricsError):
    """The provider refused the query (bad PromQL, more than one series)."""


class MetricProvider(Protocol):
    async def query(self, promql: str, at: datetime.datetime) -> float:
        """The value of an instant query at ``at``; raises a MetricsError subclass otherwise."""
        ...

    async def query_by(self, promql: str, at: datetime.datetime, label: str) -> dict[str, float]:
        """An instant query returning several series: value by the given label (e.g. ``le``)."""
        ...


@functools.lru_cache(maxsize=64)
def _prometheus(address: str, timeout: float) -> MetricProvider:
    from canary_operator.providers import prometheus

    return prometheus.PrometheusProvider(address=address, timeout=timeout)


def for_analysis(analysis: models.Analysis) -> MetricProvider:
    """The provider an analysis asks for (one per address, reused across checks and rollouts)."""
    return _prometheus(str(analysis.prometheus.address), models.parse_duration(analysis.prometheus.timeout))
