"""A namespaced install as it runs: the operator started with ``--namespace`` reconciles the rollouts there,
never looks at another namespace, and needs nothing beyond the Role the chart puts in each watched
namespace and the read-only watch of the CRD."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any

import helm_python as helm
import helpers
import pytest
import yaml

from canary_bench import cluster as clusters
from canary_operator import kube

pytestmark = pytest.mark.slow


def rollout_collection(namespace: str) -> str:
    return f"/apis/canary.dev/v1alpha1/namespaces/{namespace}/canaryrollouts"


def rollout() -> dict[str, Any]:
    manifest = helpers.example_rollout()
    del manifest["metadata"]["namespace"]
    manifest["spec"]["analysis"]["prometheus"]["address"] = "http://127.0.0.1:9"  # nothing there: no check runs
    return manifest


def target() -> dict[str, Any]:
    manifest = helpers.deployment("web", replicas=2)
    del manifest["metadata"]["namespace"]
    return manifest


def chart_grants(namespaces: list[str]) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(what each Role grants, what the ClusterRole grants) in a namespaced install."""
    with helm.Chart.load(helpers.CHART) as chart:
        rendered = chart.render(
            {"watchNamespaces": namespaces, "peering": {"enabled": False}, "replicas": 1},
            name="canary",
            namespace="canary-system",
        )
    objects = [
        obj
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for obj in yaml.safe_load_all(text)
        if obj
    ]
    [role, *_] = [o for o in objects if o["kind"] == "Role"]
    [cluster_role] = [o for o in objects if o["kind"] == "ClusterRole"]
    return helpers.granted(role["rules"]), helpers.granted(cluster_role["rules"])


def test_an_operator_watching_one_namespace_works_there_only_within_its_roles() -> None:
    log = pathlib.Path(tempfile.mkdtemp(prefix="namespaced-")) / "operator.log"
    with clusters.EmulatedCluster(ready_delay=0.1, request_log_limit=100) as cluster:
        for namespace in ("team-a", "team-b"):
            cluster.create_namespace(namespace)
            cluster.create(kube.deployment_path(namespace), target())
            cluster.create(rollout_collection(namespace), rollout())
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "CANARY_HTTP_PORT": "0"}
        with log.open("ab") as out:
            operator = subprocess.Popen(
                [sys.executable, "-m", "canary_operator", "--namespace=team-a"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            cluster.wait_for(
                lambda: ((cluster.rollout("team-a", "web") or {}).get("status") or {}).get("phase") == "Stable",
                timeout=60,
                interval=0.2,
                message="team-a's rollout Stable",
            )
            assert operator.poll() is None, log.read_text()[-2000:]
            assert "status" not in (cluster.rollout("team-b", "web") or {}), "team-b is not watched"
            helpers.assert_not_taken_over(cluster.deployment("team-b", "web"), 2)
            assert cluster.deployment("team-b", "web-primary") is None
            used = cluster.grants_used(("kopf/", kube.USER_AGENT))
            calls = cluster.call(lambda: {(agent, path) for agent, _, path, _ in cluster.emulator.calls})
        finally:
            operator.kill()
            operator.wait(timeout=15)
    in_role, cluster_wide = chart_grants(["team-a"])
    assert used <= in_role | cluster_wide, f"beyond the namespaced chart: {sorted(used - in_role - cluster_wide)}"
    assert cluster_wide <= used, f"granted cluster-wide, never used: {sorted(cluster_wide - used)}"
    operator_paths = [p for agent, p in calls if agent.startswith(("kopf/", kube.USER_AGENT))]
    namespaced = [p for p in operator_paths if "/namespaces/" in p]
    assert namespaced and all("/namespaces/team-a/" in p for p in namespaced), sorted(set(namespaced))
    cluster_scoped = {p for p in operator_paths if "/namespaces/" not in p and p.startswith(("/api/", "/apis/"))}
    assert all("customresourcedefinitions" in p or p.count("/") <= 3 for p in cluster_scoped), sorted(cluster_scoped)
