"""Fixtures of the router tests: an emulated cluster, the operator's client, and a bed per router kind."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from router_beds import KINDS, Bed

from canary_bench import cluster as clusters
from canary_operator import kube


@pytest.fixture
def ready_delay() -> float:
    """The cluster of tests/conftest.py (its namespace ``shop`` is NS), pods ready quickly: the ticks poll them."""
    return 0.02


@pytest.fixture
def make_bed(cluster: clusters.EmulatedCluster, api: kube.Client) -> Callable[[str], Bed]:
    return lambda name: Bed(cluster, KINDS[name], api)
