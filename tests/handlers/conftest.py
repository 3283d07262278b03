"""Fixtures of the fast tier of the I/O edge: one emulated cluster per module, a namespace per test."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import kopf
import pytest
from kopf._core.engines import posting
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
    queue: asyncio.Queue[posting.K8sEvent] = asyncio.Queue()
    tokens = (
        posting.settings_var.set(kopf.OperatorSettings()),
        posting.event_queue_var.set(queue),
        posting.event_queue_loop_var.set(asyncio.get_running_loop()),
    )
    async with kube.Client(kopf.ConnectionInfo(server=cluster.url)) as api:
        world = World(cluster, namespace, api, Metrics(), queue)

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
    posting.event_queue_loop_var.reset(tokens[2])
    posting.event_queue_var.reset(tokens[1])
    posting.settings_var.reset(tokens[0])
