"""Fixtures of the fast tier of the I/O edge: one emulated cluster per module, a namespace per test."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import kopf
import pytest
from ticking import Metrics, World, Write

from canary_bench import cluster as clusters
from canary_bench import emulation
from canary_bench.emulation import faults
from canary_operator import kube

_namespaces = itertools.count()


@pytest.fixture(scope="module")
def cluster() -> Iterator[clusters.EmulatedCluster]:
    with clusters.EmulatedCluster(ready_delay=0.0, request_log_limit=100) as running:
        yield running


@pytest.fixture
async def world(cluster: clusters.EmulatedCluster) -> AsyncIterator[World]:
    namespace = f"handlers-{next(_namespaces)}"
    cluster.create_namespace(namespace)
    async with kube.Client(kopf.ConnectionInfo(server=cluster.url)) as api:
        world = World(cluster, namespace, api, Metrics())

        def record(request: emulation.Request) -> None:
            world.writes.append(Write(request.verb, request.plural, request.name, request.subresource, request.body))

        recorder = emulation.Fault(
            "*",
            "*",
            emulation.Call(record),
            when=lambda r: r.verb in faults.WRITES and r.namespace == namespace,
            count=None,
        )
        cluster.inject(recorder)
        try:
            yield world
        finally:
            cluster.clear_faults()
