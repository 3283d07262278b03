"""Fixtures of the emulated cluster: one per test, stopped within milliseconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from canary_bench import cluster as clusters


@pytest.fixture
def cluster() -> Iterator[clusters.EmulatedCluster]:
    """An emulated cluster with namespace ``shop``, as the scenarios use."""
    with clusters.EmulatedCluster(ready_delay=0.1) as running:
        running.create_namespace("shop")
        yield running
