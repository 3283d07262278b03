"""Fixtures of the router tests: an emulated cluster, the operator's client, and a bed per router kind."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from router_beds import KINDS, NS, Bed

from canary_bench import cluster as clusters
from canary_operator import kube


@pytest.fixture
def cluster() -> Iterator[clusters.EmulatedCluster]:
    with clusters.EmulatedCluster(ready_delay=0.02) as running:
        running.create_namespace(NS)
        yield running


@pytest.fixture
def make_bed(cluster: clusters.EmulatedCluster, api: kube.Client) -> Callable[[str], Bed]:
    return lambda name: Bed(cluster, KINDS[name], api)
