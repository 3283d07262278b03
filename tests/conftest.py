"""Shared fixtures (a real Prometheus, live or backfilled) and the test tiers.

Tiers, by marker: unmarked tests are fast (``make unit``: ``-m "not slow"``); ``slow`` ones start
the operator as a process or run a long scenario; ``e2e`` ones need a real cluster and run only
with ``--with-e2e`` (or alone with ``--only-e2e``). Slow and e2e tests run last, so that a
broken unit shows up before the long ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import kopf
import pytest

from canary_bench import cluster as clusters
from canary_bench import prometheus
from canary_operator import kube
from canary_operator.providers import prometheus as prometheus_provider

SLOW_BY_PLACE = frozenset({"scenarios"})
SLOW_FILES = frozenset({"test_plugin.py"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--with-e2e", action="store_true", help="Also run the end-to-end tests (a real cluster).")
    parser.addoption("--only-e2e", action="store_true", help="Run only the end-to-end tests (a real cluster).")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    with_e2e = bool(config.getoption("--with-e2e"))
    only_e2e = bool(config.getoption("--only-e2e"))
    if only_e2e:
        kept = [item for item in items if item.get_closest_marker("e2e")]
        config.hook.pytest_deselected(items=[item for item in items if not item.get_closest_marker("e2e")])
        items[:] = kept
    elif not with_e2e:
        skip = pytest.mark.skip(reason="an end-to-end test: run with --with-e2e or --only-e2e")
        for item in items:
            if item.get_closest_marker("e2e"):
                item.add_marker(skip)
    for item in items:
        # The scenarios all run the operator as a process, and the plugin's tests spawn kubectl and the plugin:
        # slow by where they live, so that a new one cannot slip into the fast tier unmarked.
        if SLOW_BY_PLACE.intersection(item.path.parts) or item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
    # A stable sort: within a tier, the order of the files and of the tests in them is kept.
    items.sort(
        key=lambda item: (item.get_closest_marker("e2e") is not None, item.get_closest_marker("slow") is not None)
    )


@pytest.fixture
def ready_delay() -> float:
    """Seconds the emulated Deployment controller takes to make a pod ready; a folder overrides it as it needs."""
    return 0.05


@pytest.fixture
def cluster(ready_delay: float) -> Iterator[clusters.EmulatedCluster]:
    """An emulated cluster with namespace ``shop``, one per test (tests/handlers shares one per module)."""
    with clusters.EmulatedCluster(ready_delay=ready_delay) as running:
        running.create_namespace("shop")
        yield running


@pytest.fixture
async def api(cluster: clusters.EmulatedCluster) -> AsyncIterator[kube.Client]:
    """The operator's API client on the test's emulated cluster."""
    async with kube.Client(kopf.ConnectionInfo(server=cluster.url)) as client:
        yield client


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
