"""Prometheus as a metric provider, through ``prometheus-api-client``.

The client is synchronous (requests); each query runs in a worker thread so the
operator's event loop never blocks on a slow Prometheus.
"""

from __future__ import annotations

import asyncio
import datetime
import math

import prometheus_api_client
import requests
import urllib3
from prometheus_api_client import exceptions as prometheus_errors

from canary_operator import providers


class PrometheusProvider:
    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.address = address.rstrip("/")
        self.timeout = timeout
        # No client-side retries: a check that cannot reach Prometheus is inconclusive at once, and the next
        # check asks again; retries with backoff would only delay the verdict (and a rollback) by seconds.
        self._client = prometheus_api_client.PrometheusConnect(
            url=self.address, disable_ssl=False, retry=urllib3.util.Retry(total=0, connect=0, read=0)
        )

    async def query(self, promql: str, at: datetime.datetime) -> float:
        return _single_value(await asyncio.to_thread(self._query, promql, at))

    async def query_by(self, promql: str, at: datetime.datetime, label: str) -> dict[str, float]:
        result = await asyncio.to_thread(self._query, promql, at)
        if not isinstance(result, list) or not result:
            raise providers.NoDataError("no series")
        values = {}
        for series in result:
            try:
                values[str(series["metric"][label])] = float(series["value"][1])
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise providers.QueryError(f"series without label {label!r}: {series!r:.200}") from exc
        return values

    def _query(self, promql: str, at: datetime.datetime) -> object:
        try:
            result = self._client.custom_query(promql, params={"time": f"{at.timestamp():.3f}"}, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise providers.UnreachableError(f"Prometheus at {self.address} unreachable: {type(exc).__name__}") from exc
        except prometheus_errors.PrometheusApiClientException as exc:
            text = str(exc)
            if "Status Code 5" in text:
                raise providers.UnreachableError(f"Prometheus at {self.address} failed: {text[:200]}") from exc
            raise providers.QueryError(f"Prometheus rejected the query: {text[:300]}") from exc
        return result


def _single_value(result: object) -> float:
    if isinstance(result, list) and not (len(result) == 2 and isinstance(result[0], int | float)):
        if not result:
            raise providers.NoDataError("no series")
        if len(result) > 1:
            raise providers.QueryError(f"query returned {len(result)} series; aggregate it to one (e.g. sum())")
        sample = result[0].get("value") if isinstance(result[0], dict) else None
    else:
        sample = result  # a scalar: [timestamp, "value"]
    try:
        value = float(sample[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError) as exc:
        raise providers.QueryError(f"unexpected result shape: {result!r:.200}") from exc
    if math.isnan(value):
        raise providers.NoDataError("NaN (no requests in the window)")
    return value
