"""Shared fixtures: a real Prometheus, live or backfilled, stopped and deleted after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import pytest

from canary_bench import prometheus
from canary_operator.providers import prometheus as prometheus_provider


@pytest.fixture(scope="session")
def prometheus_tools() -> None:
    """Fail (never skip) without Prometheus: a skipped analysis test would hide a broken bench."""
    try:
        for name in ("prometheus", "promtool"):
            prometheus.require_binary(name)
    except prometheus.PrometheusMissing as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def start_prometheus(prometheus_tools: None) -> Iterator[Callable[..., prometheus.PrometheusServer]]:
    """Start a live Prometheus: ``start_prometheus(scrape_targets=[exporter.address])``."""
    servers: list[prometheus.PrometheusServer] = []

    def start(**options: Any) -> prometheus.PrometheusServer:
        server = prometheus.PrometheusServer(**options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def backfill_prometheus(
    prometheus_tools: None,
) -> Iterator[Callable[..., prometheus.PrometheusServer]]:
    """Start a Prometheus over exact data: ``backfill_prometheus(series, openmetrics=...)``."""
    servers: list[prometheus.PrometheusServer] = []

    def start(
        series: Iterable[prometheus.Series] = (),
        *,
        openmetrics: str = "",
        **options: Any,
    ) -> prometheus.PrometheusServer:
        server = prometheus.backfilled_prometheus(series, openmetrics=openmetrics, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
async def pool() -> AsyncIterator[prometheus_provider.Pool]:
    """The operator's Prometheus connection pool (one HTTP session), closed after the test."""
    the_pool = prometheus_provider.Pool()
    yield the_pool
    await the_pool.close()
