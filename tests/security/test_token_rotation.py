"""A rotated service-account token: the API server stops taking the old one, the operator logs in again
(re-reading its credentials) and carries on, instead of failing every call with 401 for ever."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any

import helpers
import pytest
import yaml

from canary_bench import cluster as clusters
from canary_operator import kube

pytestmark = pytest.mark.slow


def kubeconfig(server: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "emulated",
        "clusters": [{"name": "emulated", "cluster": {"server": server}}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "operator"}}],
    }


def phase(cluster: clusters.EmulatedCluster) -> str | None:
    return ((cluster.rollout("shop", "web") or {}).get("status") or {}).get("phase")


def test_after_a_token_rotation_the_operator_logs_in_again_and_releases_the_next_revision() -> None:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="rotation-"))
    config, log = workdir / "kubeconfig", workdir / "operator.log"
    valid = {"token": "first"}
    with clusters.EmulatedCluster(ready_delay=0.1, request_log_limit=100) as cluster:
        # The API server takes only the current token from the operator (kubectl and the test are not asked).
        cluster.call(
            lambda: (
                cluster.emulator[
                    lambda request: (
                        request.headers.get("User-Agent", "").startswith(("kopf/", kube.USER_AGENT))
                        and request.headers.get("Authorization") != f"Bearer {valid['token']}"
                    )
                ]
                << 401
            )
        )
        cluster.create_namespace("shop")
        cluster.create(kube.deployment_path("shop"), helpers.deployment("web", replicas=2))
        rollout = helpers.example_rollout()
        rollout["spec"]["analysis"]["prometheus"]["address"] = "http://127.0.0.1:9"
        cluster.create("/apis/canary.dev/v1alpha1/namespaces/shop/canaryrollouts", rollout)
        config.write_text(yaml.safe_dump(kubeconfig(cluster.url, "first")))
        env = {**os.environ, "KUBECONFIG": str(config), "CANARY_HTTP_PORT": "0", "CANARY_TICK_SECONDS": "0.5"}
        with log.open("ab") as out:
            operator = subprocess.Popen(
                [sys.executable, "-m", "canary_operator"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            cluster.wait_for(lambda: phase(cluster) == "Stable", timeout=60, interval=0.2, message="Stable")
            # The rotation: a new token on disk, the old one refused from now on.
            config.write_text(yaml.safe_dump(kubeconfig(cluster.url, "second")))
            valid["token"] = "second"
            cluster.patch(
                kube.deployment_path("shop", "web"),
                [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "example/web:2.0"}],
                "json",
            )
            cluster.wait_for(
                lambda: phase(cluster) == "Progressing",
                timeout=60,
                interval=0.2,
                message="the new revision released as a canary with the new token",
            )
            canary = cluster.deployment("shop", "web-canary")
            assert canary is not None
            assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == "example/web:2.0"
            assert operator.poll() is None, log.read_text()[-2000:]
        finally:
            operator.kill()
            operator.wait(timeout=15)
