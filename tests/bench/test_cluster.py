"""The emulated cluster: its lifecycle, its Deployment controller, the real kubectl and a real Kopf operator."""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
import yaml
from helpers import deployment
from kopf.testing import KopfRunner

from canary_bench import cluster as clusters

DEPLOYMENTS = "/apis/apps/v1/namespaces/shop/deployments"
ROLLOUTS = "/apis/canary.dev/v1alpha1/namespaces/shop/canaryrollouts"


def rollout(name: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "canary.dev/v1alpha1",
        "kind": "CanaryRollout",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "targetRef": {"name": "web"},
            "service": {"port": 80},
            "trafficRouting": {"replicas": {}},
            "steps": [{"setWeight": 50}],
            "analysis": {
                "prometheus": {"address": "http://127.0.0.1:9090"},
                "metrics": [{"name": "errors", "template": "error-rate", "max": 1}],
            },
        },
    }


def status_of(cluster: clusters.EmulatedCluster, name: str = "web") -> dict[str, Any]:
    return dict((cluster.deployment("shop", name) or {}).get("status") or {})


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


def observed(cluster: clusters.EmulatedCluster, generation: int, name: str = "web") -> dict[str, Any] | None:
    status = status_of(cluster, name)
    return status if status.get("observedGeneration") == generation else None


def ready(cluster: clusters.EmulatedCluster, name: str = "web") -> dict[str, Any] | None:
    found = cluster.deployment("shop", name) or {}
    status = found.get("status") or {}
    wanted = found.get("spec", {}).get("replicas")
    done = (
        status.get("observedGeneration") == found.get("metadata", {}).get("generation")
        and status.get("availableReplicas", 0) == wanted
        and conditions(status).get("Progressing", ("", ""))[1] == "NewReplicaSetAvailable"
    )
    return status if done else None


# ---------------------------------------------------------------- lifecycle


@contextlib.contextmanager
def open_watch(cluster: clusters.EmulatedCluster) -> Iterator[None]:
    """An open watch-stream, as an operator keeps one."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{cluster.url}/api/v1/namespaces?watch=true", timeout=5) as stream:
        stream.readline()
        yield


def test_clusters_serve_on_free_loopback_ports_and_stop_at_once_in_any_order() -> None:
    first, second = clusters.EmulatedCluster().start(), clusters.EmulatedCluster().start()
    try:
        assert first.url.startswith("http://127.0.0.1:") and second.url.startswith("http://127.0.0.1:")
        assert first.url != second.url
        with open_watch(first):  # an open watch must not delay the stop
            started = time.monotonic()
            first.stop()
            assert time.monotonic() - started < 1
        assert {"default", "kube-system"} <= {ns["metadata"]["name"] for ns in second.list("/api/v1/namespaces")}
    finally:
        first.stop()
        second.stop()


def test_the_kubeconfig_points_clients_at_the_cluster(cluster: clusters.EmulatedCluster) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == cluster.url
    assert config["contexts"][0]["context"]["namespace"] == "default"


def test_creating_an_existing_namespace_answers_it(cluster: clusters.EmulatedCluster) -> None:
    assert cluster.create_namespace("shop")["metadata"]["name"] == "shop"


def test_the_printer_columns_of_a_crd_file_are_served(
    cluster: clusters.EmulatedCluster,
    tmp_path: pathlib.Path,
) -> None:
    crd = (
        yaml.safe_load(clusters.DEFAULT_CRD_PATH.read_text())
        if clusters.DEFAULT_CRD_PATH.exists()
        else dict(clusters.FALLBACK_CRD)
    )
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = [
        {"name": "Target", "type": "string", "jsonPath": ".spec.targetRef.name"}
    ]
    path = tmp_path / "crd.yaml"
    path.write_text(yaml.safe_dump(crd))
    cluster.load_crd(path)
    cluster.create(ROLLOUTS, rollout())
    _, table = cluster.request("GET", ROLLOUTS, accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Target"]
    assert table["rows"][0]["cells"] == ["web", "web"]


# ---------------------------------------------------------------- the Deployment controller


def test_a_new_deployment_is_reported_progressing_then_available(cluster: clusters.EmulatedCluster) -> None:
    cluster.hold_rollout("shop", "web")
    cluster.create(DEPLOYMENTS, deployment(replicas=2))
    status = cluster.wait_for(lambda: observed(cluster, 1), message="the rollout to start")
    assert "readyReplicas" not in status and "updatedReplicas" not in status  # zero counts are omitted
    assert status["unavailableReplicas"] == 2
    assert conditions(status) == {
        "Available": ("False", "MinimumReplicasUnavailable"),
        "Progressing": ("True", "ReplicaSetUpdated"),
    }

    cluster.release_rollout("shop", "web")
    status = cluster.wait_for(lambda: ready(cluster), message="the rollout to finish")
    assert {
        k: status.get(k) for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    } == dict.fromkeys(("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"), 2)
    assert conditions(status) == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }


def test_a_rollout_takes_the_ready_delay(cluster: clusters.EmulatedCluster) -> None:
    cluster.ready_delay = 0.3
    started = time.monotonic()
    cluster.create(DEPLOYMENTS, deployment())
    cluster.wait_for(lambda: ready(cluster), message="the rollout to finish")
    assert time.monotonic() - started >= 0.3


def test_the_status_is_written_through_the_status_subresource(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    cluster.wait_for(lambda: ready(cluster), message="the rollout to finish")
    assert (cluster.deployment("shop", "web") or {})["metadata"]["generation"] == 1


def test_a_new_pod_template_is_a_new_revision_rolled_out_again(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    cluster.wait_for(lambda: ready(cluster), message="the first rollout")
    cluster.hold_rollout("shop", "web")
    cluster.patch(
        f"{DEPLOYMENTS}/web",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example/web:2.0"}]}}}},
        kind="strategic",
    )
    status = cluster.wait_for(lambda: observed(cluster, 2), message="the second rollout to start")
    assert conditions(status)["Progressing"] == ("True", "ReplicaSetUpdated")
    assert status["readyReplicas"] == 2 and "updatedReplicas" not in status  # the old pods still serve
    annotations = (cluster.deployment("shop", "web") or {})["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/revision"] == "2"
    cluster.release_rollout("shop", "web")
    assert cluster.wait_for(lambda: ready(cluster), message="the second rollout")["updatedReplicas"] == 2


def test_a_deployment_scaled_to_zero_reports_no_replicas(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(DEPLOYMENTS, deployment(replicas=0))
    status = cluster.wait_for(lambda: ready(cluster), message="the rollout")
    assert {k for k in status if k.endswith("eplicas")} == set()
    assert conditions(status)["Available"] == ("True", "MinimumReplicasAvailable")


def test_a_deployment_without_replicas_runs_one(cluster: clusters.EmulatedCluster) -> None:
    body = deployment()
    del body["spec"]["replicas"]
    cluster.create(DEPLOYMENTS, body)
    assert cluster.wait_for(lambda: ready(cluster), message="the rollout")["readyReplicas"] == 1


# ---------------------------------------------------------------- the real kubectl


def kubectl(cluster: clusters.EmulatedCluster, *args: str, stdin: str | None = None) -> str:
    result = cluster.kubectl(*args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def table(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def test_kubectl_apply_creates_and_then_strategically_patches_a_deployment(cluster: clusters.EmulatedCluster) -> None:
    assert (
        kubectl(cluster, "apply", "-f", "-", stdin=yaml.safe_dump(deployment())).strip()
        == "deployment.apps/web created"
    )
    changed = deployment(image="example/web:2.0")
    assert (
        kubectl(cluster, "apply", "-f", "-", stdin=yaml.safe_dump(changed)).strip() == "deployment.apps/web configured"
    )
    containers = (cluster.deployment("shop", "web") or {})["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("app", "example/web:2.0"),
        ("sidecar", "example/sidecar:1.0"),
    ]


def test_kubectl_get_deployments_shows_the_ready_replicas(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(DEPLOYMENTS, deployment(replicas=2))
    cluster.wait_for(lambda: ready(cluster), message="the rollout")
    rows = table(kubectl(cluster, "get", "deployments", "-n", "shop"))
    assert rows[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows[1][:4] == ["web", "2/2", "2", "2"]


def test_kubectl_get_canaryrollouts_shows_the_printer_columns(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(ROLLOUTS, rollout())
    cluster.patch(
        f"{ROLLOUTS}/web/status",
        {"status": {"phase": "Progressing", "currentStepIndex": 0, "step": "1/4", "weight": 50, "lastVerdict": "Pass"}},
    )
    output = kubectl(cluster, "get", "canaryrollouts", "-n", "shop")
    crd = (
        yaml.safe_load(clusters.DEFAULT_CRD_PATH.read_text())
        if clusters.DEFAULT_CRD_PATH.exists()
        else clusters.FALLBACK_CRD
    )
    shown = [c["name"].upper() for c in crd["spec"]["versions"][0]["additionalPrinterColumns"] if not c.get("priority")]
    header, row = output.strip().splitlines()
    assert header.split() == " ".join(["NAME", *shown]).split()
    assert row.split()[:5] == ["web", "Progressing", "1/4", "50", "Pass"]
    assert table(kubectl(cluster, "get", "canary", "-n", "shop"))[1][0] == "web"  # the short name


def test_kubectl_scale_changes_the_replicas(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(DEPLOYMENTS, deployment(replicas=2))
    assert (
        kubectl(cluster, "scale", "deployment", "web", "-n", "shop", "--replicas=4").strip()
        == "deployment.apps/web scaled"
    )
    assert (cluster.deployment("shop", "web") or {})["spec"]["replicas"] == 4
    assert cluster.wait_for(lambda: ready(cluster), message="the rollout")["readyReplicas"] == 4


def test_kubectl_get_watch_prints_the_changes(cluster: clusters.EmulatedCluster) -> None:
    cluster.hold_rollout("shop", "web")
    cluster.create(DEPLOYMENTS, deployment(replicas=2))
    cluster.wait_for(lambda: observed(cluster, 1), message="the rollout to start")
    command = [
        clusters.find_kubectl(),
        "--kubeconfig",
        str(cluster.kubeconfig),
        "get",
        "deployments",
        "-n",
        "shop",
        "--watch",
        "--request-timeout=10s",
    ]
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as watcher:
        assert watcher.stdout is not None
        try:
            assert watcher.stdout.readline().split()[:2] == ["NAME", "READY"]
            assert watcher.stdout.readline().split()[:2] == ["web", "0/2"]
            cluster.release_rollout("shop", "web")
            assert watcher.stdout.readline().split()[:2] == ["web", "2/2"]
        finally:
            watcher.terminate()


def test_kubectl_rollout_status_waits_for_the_deployment(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    assert "successfully rolled out" in kubectl(
        cluster, "rollout", "status", "deployment/web", "-n", "shop", "--timeout=10s"
    )


def test_kubectl_apply_rejects_a_rollout_with_an_unknown_field(cluster: clusters.EmulatedCluster) -> None:
    manifest = rollout()
    manifest["spec"]["weight"] = 10
    result = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    assert result.returncode == 1
    assert 'strict decoding error: unknown field "spec.weight"' in result.stderr


# ---------------------------------------------------------------- a real Kopf operator


def test_a_kopf_operator_with_a_finalizer_a_timer_and_status_patches_runs_to_completion(
    cluster: clusters.EmulatedCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    registry = kopf.OperatorRegistry()
    cleaned_up = threading.Event()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = "canary.dev/test"

    @kopf.on.create("canary.dev", "v1alpha1", "canaryrollouts", registry=registry)
    def start(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        kopf.info(body, reason="Started", message="Shifting traffic.")
        patch.status["phase"] = "Progressing"
        patch.status["weight"] = 0

    @kopf.timer("canary.dev", "v1alpha1", "canaryrollouts", interval=0.05, registry=registry)
    def step(status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
        if status.get("phase") == "Progressing":
            weight = status.get("weight", 0)
            if weight < 100:
                patch.status["weight"] = weight + 25
            else:
                patch.status["phase"] = "Succeeded"

    @kopf.on.delete("canary.dev", "v1alpha1", "canaryrollouts", registry=registry)
    def clean_up(**_: Any) -> None:
        cleaned_up.set()

    with KopfRunner(["run", "--standalone", "--all-namespaces"], registry=registry) as runner:
        cluster.create(ROLLOUTS, rollout("web"))
        done = cluster.wait_for(
            lambda: (r := cluster.rollout("shop", "web")) and r.get("status", {}).get("phase") == "Succeeded" and r,
            message="the rollout to succeed",
        )
        assert done["status"]["weight"] == 100
        assert "canary.dev/test" in done["metadata"]["finalizers"]
        started = cluster.wait_for(
            lambda: [e for e in cluster.events("shop") if e["reason"] == "Started"],
            message="the event of the create handler",
        )
        assert started[0]["involvedObject"]["name"] == "web"

        cluster.delete(f"{ROLLOUTS}/web")
        cluster.wait_for(lambda: cluster.rollout("shop", "web") is None, message="the finalizer to be released")

    assert runner.exception is None, runner.output
    assert runner.exit_code == 0, runner.output
    assert cleaned_up.is_set()
