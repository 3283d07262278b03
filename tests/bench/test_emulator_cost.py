"""What one request costs the emulator: the same for the thousandth as for the tenth, faults or none.

A benchmark against the emulator measures the emulator if serving gets slower with every request
served (kmock matches each request against its reactions by walking the requests they have seen)
or with every fault a test ever registered. Work is counted, not timed: the Python calls the
emulator's own code and kmock make while serving a batch of requests, in the emulator's thread.
"""

from __future__ import annotations

import http.client
import pathlib
import sys
import types
from collections.abc import Callable
from typing import Any

import kmock

from canary_bench import cluster as clusters
from canary_bench import emulation

CONFIGMAPS = "/api/v1/namespaces/shop/configmaps"
# The code whose calls count as the emulator's work: kmock and the emulation package.
COUNTED = (str(pathlib.Path(kmock.__file__).parent), str(pathlib.Path(emulation.__file__).parent))
BATCH = 10


def work(cluster: clusters.EmulatedCluster, send: Callable[[], None]) -> int:
    """The calls into the emulator's code (and kmock's) while ``send`` runs its requests."""
    calls = 0

    def profile(frame: types.FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call" and frame.f_code.co_filename.startswith(COUNTED):
            calls += 1

    cluster.call(lambda: sys.setprofile(profile))
    try:
        send()
    finally:
        cluster.call(lambda: sys.setprofile(None))
    return calls


def getter(cluster: clusters.EmulatedCluster, name: str, count: int) -> Callable[[], None]:
    """Send ``count`` GETs of one ConfigMap over one kept-alive connection, each answered before the next."""
    host, port = cluster.url.removeprefix("http://").rsplit(":", 1)

    def send() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            for _ in range(count):
                connection.request("GET", f"{CONFIGMAPS}/{name}")
                response = connection.getresponse()
                response.read()
                assert response.status in (200, 404), response.status
        finally:
            connection.close()

    return send


def test_the_thousandth_request_costs_no_more_than_the_tenth(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, {"metadata": {"name": "settings"}, "data": {"mode": "fast"}})
    early = work(cluster, getter(cluster, "settings", BATCH))
    getter(cluster, "settings", 1000)()  # every request is kept (no request_log_limit, as in the tests)
    late = work(cluster, getter(cluster, "settings", BATCH))
    assert cluster.call(lambda: len(list(cluster.emulator))) > 1000  # still kept for assertions
    assert late <= early * 1.2, f"{BATCH} GETs cost {early} calls at first and {late} after 1,000 requests"


def test_faults_that_fired_or_are_about_other_requests_cost_a_request_nothing(
    cluster: clusters.EmulatedCluster,
) -> None:
    cluster.create(CONFIGMAPS, {"metadata": {"name": "settings"}})
    cluster.create(CONFIGMAPS, {"metadata": {"name": "used"}})

    def unrelated() -> emulation.Fault:  # a write to Deployments; never spent
        return cluster.inject(emulation.Fault("patch", "apps/v1/deployments", emulation.server_error(), count=None))

    unrelated()
    one = work(cluster, getter(cluster, "settings", BATCH))
    spent = [
        cluster.inject(emulation.Fault("get", "configmaps", emulation.Call(lambda _: None), name="used"))
        for _ in range(100)
    ]
    for _ in range(99):
        unrelated()
    getter(cluster, "used", 1)()  # the 100 recording faults all fire on this one request, and are spent
    assert all(fault.fired == 1 for fault in spent)
    many = work(cluster, getter(cluster, "settings", BATCH))
    assert many <= one * 1.2, f"{BATCH} GETs cost {one} calls with 1 fault registered, {many} with 200"
    # A live fault on the same request is still seen: the index skips only what cannot fire.
    refusal = cluster.inject(emulation.Fault("get", "configmaps", emulation.server_error(), name="settings"))
    code, _ = cluster.request("GET", f"{CONFIGMAPS}/settings")
    assert (code, refusal.fired) == (500, 1)
