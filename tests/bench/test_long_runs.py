"""What a long run (the scale benchmark) needs of the emulator: bounded memory of requests, counts by verb."""

from __future__ import annotations

import collections

from canary_bench import cluster as clusters


def test_a_bounded_emulator_keeps_only_the_last_requests_and_still_serves() -> None:
    with clusters.EmulatedCluster(request_log_limit=3, history_limit=2) as cluster:
        cluster.create_namespace("shop")
        for i in range(20):
            cluster.patch("/api/v1/namespaces/shop", {"metadata": {"labels": {"n": str(i)}}})
        assert cluster.get("/api/v1/namespaces/shop")["metadata"]["labels"]["n"] == "19"  # type: ignore[index]
        kept = cluster.call(lambda: len(cluster.emulator._requests))
        assert kept <= 3
        versions = cluster.call(
            lambda: [len(obj.history) for key, obj in cluster.emulator.objects.items() if key[2] == "shop"]
        )
        assert versions and max(versions) <= 2


def test_requests_are_counted_by_the_verbs_of_the_api_servers_audit_log() -> None:
    with clusters.EmulatedCluster() as cluster:
        cluster.create_namespace("shop")
        before = cluster.call(lambda: collections.Counter(cluster.emulator.verbs))
        cluster.get("/api/v1/namespaces/shop")
        cluster.list("/api/v1/namespaces/shop/services")
        cluster.create("/api/v1/namespaces/shop/configmaps", {"metadata": {"name": "c"}, "data": {}})
        cluster.patch("/api/v1/namespaces/shop/configmaps/c", {"data": {"a": "b"}})
        cluster.delete("/api/v1/namespaces/shop/configmaps/c")
        counted = cluster.call(lambda: collections.Counter(cluster.emulator.verbs)) - before
        assert counted == {"get": 1, "list": 1, "create": 1, "patch": 1, "delete": 1}
