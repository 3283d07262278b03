"""Faults a test injects into the emulated API: which requests they hit, and what the client sees."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from helpers import deployment

from canary_bench import cluster as clusters
from canary_bench import emulation
from canary_bench import stage as stages

DEPLOYMENTS = "/apis/apps/v1/namespaces/shop/deployments"
CONFIGMAPS = "/api/v1/namespaces/shop/configmaps"


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def api_error(cluster: clusters.EmulatedCluster, method: str, path: str, body: Any = None) -> tuple[int, str]:
    code, answer = cluster.request(method, path, body, content_type="application/merge-patch+json")
    assert code >= 400, f"expected an error, got {code}: {answer}"
    return code, answer["reason"]


def stored(cluster: clusters.EmulatedCluster, name: str) -> dict[str, Any]:
    found = cluster.get(f"{CONFIGMAPS}/{name}")
    assert found is not None
    return found


def test_a_conflict_on_the_second_patch_refuses_only_that_one(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a", k="0"))
    fault = cluster.inject(emulation.Fault("patch", "configmaps", emulation.conflict(), name="a", nth=2))
    cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": "1"}})
    assert api_error(cluster, "PATCH", f"{CONFIGMAPS}/a", {"data": {"k": "2"}}) == (409, "Conflict")
    assert stored(cluster, "a")["data"] == {"k": "1"}, "a refused write is not applied"
    cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": "3"}})
    assert stored(cluster, "a")["data"] == {"k": "3"}
    assert (fault.seen, fault.fired) == (2, 1), "an exhausted fault counts no more"
    assert fault.requests[0].body == {"data": {"k": "2"}}


def test_a_status_fault_hits_the_status_subresource_and_not_the_object(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    conflict = emulation.conflict()
    cluster.inject(emulation.Fault("patch", "apps/v1/deployments", conflict, subresource="status", count=None))
    cluster.patch(f"{DEPLOYMENTS}/web", {"spec": {"replicas": 3}})
    code, reason = api_error(cluster, "PATCH", f"{DEPLOYMENTS}/web/status", {"status": {"replicas": 3}})
    assert (code, reason) == (409, "Conflict")
    code, reason = api_error(cluster, "PATCH", f"{DEPLOYMENTS}/web/status", {"status": {"replicas": 4}})
    assert (code, reason) == (409, "Conflict"), "count=None: every match from the nth on"


def test_a_server_error_on_create_creates_nothing_and_names_the_object(cluster: clusters.EmulatedCluster) -> None:
    fault = cluster.inject(emulation.Fault("create", "v1/configmaps", emulation.server_error(), name="b"))
    cluster.create(CONFIGMAPS, configmap("a"))  # another name: not matched
    code, answer = cluster.request("POST", CONFIGMAPS, configmap("b"))
    assert (code, answer["reason"], answer["details"]["name"]) == (500, "InternalError", "b")
    assert cluster.get(f"{CONFIGMAPS}/b") is None
    assert cluster.create(CONFIGMAPS, configmap("b"))["metadata"]["name"] == "b", "count=1: the next one passes"
    assert fault.fired == 1


def test_a_predicate_on_the_body_picks_the_write_and_a_body_of_another_shape_does_not_match(
    cluster: clusters.EmulatedCluster,
) -> None:
    cluster.create(DEPLOYMENTS, deployment(replicas=2))
    fault = cluster.inject(
        emulation.Fault(
            "patch",
            "deployments",
            emulation.server_error(),
            name="web",
            when=lambda request: request.body["spec"]["replicas"] == 0,
        )
    )
    cluster.patch(f"{DEPLOYMENTS}/web", {"metadata": {"labels": {"x": "y"}}})  # no spec: KeyError, no match
    cluster.patch(f"{DEPLOYMENTS}/web", {"spec": {"replicas": 5}})
    assert api_error(cluster, "PATCH", f"{DEPLOYMENTS}/web", {"spec": {"replicas": 0}})[0] == 500
    found = cluster.get(f"{DEPLOYMENTS}/web")
    assert found is not None and found["spec"]["replicas"] == 5
    assert (fault.seen, fault.fired) == (1, 1)


def test_reads_are_not_affected_by_a_fault_on_writes(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a"))
    fault = cluster.inject(emulation.Fault("patch", "configmaps", emulation.server_error(), count=None))
    assert cluster.get(f"{CONFIGMAPS}/a") is not None
    assert [c["metadata"]["name"] for c in cluster.list(CONFIGMAPS)] == ["a"]
    assert fault.seen == 0


def test_a_hang_answers_504_after_its_bound_and_applies_nothing(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a", k="0"))
    cluster.inject(emulation.Fault("patch", "configmaps", emulation.Hang(0.3)))
    started = time.monotonic()
    code, reason = api_error(cluster, "PATCH", f"{CONFIGMAPS}/a", {"data": {"k": "1"}})
    assert (code, reason) == (504, "Timeout")
    assert time.monotonic() - started >= 0.3
    assert stored(cluster, "a")["data"] == {"k": "0"}


def test_a_client_that_gives_up_on_a_hang_leaves_the_server_answering(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a", k="0"))
    fault = cluster.inject(emulation.Fault("patch", "configmaps", emulation.Hang(30)))
    request = urllib.request.Request(
        f"{cluster.url}{CONFIGMAPS}/a",
        data=b'{"data": {"k": "1"}}',
        method="PATCH",
        headers={"Content-Type": "application/merge-patch+json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        opener.open(request, timeout=0.3)
    started = time.monotonic()
    assert stored(cluster, "a")["data"] == {"k": "0"}
    assert time.monotonic() - started < 5, "a hung request does not block the others"
    assert fault.fired == 1


def test_a_callback_on_arrival_sees_the_old_object_and_once_applied_the_new_one(
    cluster: clusters.EmulatedCluster,
) -> None:
    cluster.create(CONFIGMAPS, configmap("a", k="0"))
    seen: list[tuple[str, str]] = []

    def look(moment: str) -> Any:
        def callback(request: emulation.Request) -> None:  # runs in the cluster's thread: the emulator is ours
            obj = cluster.emulator.get_object("v1/configmaps", "shop", "a")
            assert obj is not None
            seen.append((moment, obj["data"]["k"]))

        return callback

    cluster.inject(emulation.Fault("patch", "configmaps", emulation.Call(look("arrived"))))
    cluster.inject(emulation.Fault("patch", "configmaps", emulation.Call(look("applied"), emulation.Moment.APPLIED)))
    cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": "1"}})
    assert seen == [("arrived", "0"), ("applied", "1")]


def test_a_dropped_request_runs_its_callback_and_is_not_applied(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a", k="0"))
    calls: list[emulation.Request] = []
    fault = cluster.inject(emulation.Fault("patch", "configmaps", emulation.Call(calls.append, apply=False)))
    assert api_error(cluster, "PATCH", f"{CONFIGMAPS}/a", {"data": {"k": "1"}}) == (503, "ServiceUnavailable")
    assert stored(cluster, "a")["data"] == {"k": "0"}
    assert [(r.verb, r.plural, r.name, r.body) for r in calls] == [("patch", "configmaps", "a", {"data": {"k": "1"}})]
    assert fault.wait(timeout=0) is calls[0]


def test_a_request_that_fails_on_its_own_is_not_an_applied_occurrence(cluster: clusters.EmulatedCluster) -> None:
    created = cluster.create(CONFIGMAPS, configmap("a", k="0"))
    calls: list[emulation.Request] = []
    record = emulation.Call(calls.append, emulation.Moment.APPLIED)
    fault = cluster.inject(emulation.Fault("patch", "configmaps", record))
    stale = {"metadata": {"resourceVersion": "1"}, "data": {"k": "1"}}
    assert created["metadata"]["resourceVersion"] != "1"
    assert api_error(cluster, "PATCH", f"{CONFIGMAPS}/a", stale) == (409, "Conflict")
    assert (fault.seen, calls) == (0, [])
    cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": "2"}})
    assert fault.seen == 1 and calls[0].body == {"data": {"k": "2"}}


def test_the_first_registered_fault_decides_and_a_removed_one_is_gone(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a"))
    first = cluster.inject(emulation.Fault("patch", "configmaps", emulation.conflict()))
    second = cluster.inject(emulation.Fault("patch", "configmaps", emulation.server_error()))
    assert api_error(cluster, "PATCH", f"{CONFIGMAPS}/a", {"data": {"k": "1"}})[0] == 409
    assert api_error(cluster, "PATCH", f"{CONFIGMAPS}/a", {"data": {"k": "2"}})[0] == 500
    assert (first.fired, second.fired) == (1, 1)
    with cluster.fault(emulation.Fault("patch", "configmaps", emulation.conflict(), count=None)):
        assert api_error(cluster, "PATCH", f"{CONFIGMAPS}/a", {"data": {"k": "3"}})[0] == 409
    cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": "4"}})
    cluster.inject(emulation.Fault("patch", "configmaps", emulation.conflict(), count=None))
    cluster.clear_faults()
    cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": "5"}})


def test_waiting_for_a_fault_that_never_fires_times_out_with_what_it_matched() -> None:
    fault = emulation.Fault("delete", "services", emulation.conflict())
    with pytest.raises(TimeoutError, match="did not fire within 0.01s"):
        fault.wait(timeout=0.01)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"verb": "put", "resource": "configmaps"}, "unknown verb"),
        ({"verb": "patch", "resource": "apps/v1/deployments/x"}, "is not a plural"),
        ({"verb": "patch", "resource": "configmaps", "nth": 0}, "start at 1"),
    ],
)
def test_a_fault_that_could_never_match_is_refused(arguments: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        emulation.Fault(effect=emulation.conflict(), **arguments)


def test_a_callback_after_the_write_cannot_drop_it() -> None:
    with pytest.raises(ValueError, match="already applied"):
        emulation.Call(print, emulation.Moment.APPLIED, apply=False)


def test_a_recording_callback_registered_first_does_not_hide_a_conflict_after_it(
    cluster: clusters.EmulatedCluster,
) -> None:
    cluster.create(CONFIGMAPS, configmap("a"))
    writes: list[emulation.Request] = []
    cluster.inject(emulation.Fault("*", "*", emulation.Call(writes.append), count=None, when=lambda r: r.verb != "get"))
    refusal = cluster.inject(emulation.Fault("patch", "configmaps", emulation.conflict()))
    after = cluster.inject(emulation.Fault("patch", "configmaps", emulation.server_error()))
    assert api_error(cluster, "PATCH", f"{CONFIGMAPS}/a", {"data": {"k": "1"}})[0] == 409
    assert (refusal.fired, after.seen) == (1, 0), "the fault after the one that answered does not see the request"
    cluster.create(CONFIGMAPS, configmap("b"))
    assert [(r.verb, r.plural, r.name) for r in writes] == [("patch", "configmaps", "a"), ("create", "configmaps", "b")]


def test_a_signalling_callback_returns_once_the_process_is_stopped_or_dead() -> None:
    process = subprocess.Popen(["sleep", "30"])
    try:
        request = emulation.Request("patch", "", "v1", "configmaps", "shop", "a", None, None, "")
        stages.signaller(process.pid, signal.SIGSTOP)(request)
        assert stages.process_state(process.pid) in ("T", "t"), "frozen when the callback returns"
        os.kill(process.pid, signal.SIGCONT)
        stages.signaller(process.pid, signal.SIGKILL)(request)
        assert stages.process_state(process.pid) in ("Z", None), "dead when the callback returns"
    finally:
        process.kill()
        process.wait()
