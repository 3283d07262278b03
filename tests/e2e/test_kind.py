"""The product on a real cluster (kind): the chart installed, a canary promoted, a bad one rolled back.

Opt-in (``pytest --with-e2e``) and skipped with the reason when Docker, kind (pytest-kind) or helm
is missing; it cannot run on the project's build machines, which pull no images. What it does:
create a kind cluster, build and load the operator's image and the sample app's
(``tests/e2e/sample``), install the chart with ``helm``, deploy Prometheus, the app and a load
generator, apply a CanaryRollout, then release a healthy revision (promoted) and one failing 20%
of requests (rolled back), watching the status and Events as a user would with kubectl.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import helpers
import pytest
import yaml

pytestmark = pytest.mark.e2e

SAMPLE = helpers.ROOT / "tests" / "e2e" / "sample"
SAMPLE_IMAGE = "canary-e2e-sample:1"
PROMETHEUS_IMAGE = os.environ.get("CANARY_E2E_PROMETHEUS_IMAGE", "prom/prometheus:v2.53.0")
ROLLOUT = {
    "apiVersion": "canary.dev/v1alpha1",
    "kind": "CanaryRollout",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "service": {"port": 80, "targetPort": 8080},
        "trafficRouting": {"replicas": {}},
        "steps": [{"setWeight": 25}, {"pause": {"duration": "20s"}}, {"setWeight": 50}, {"pause": {"duration": "20s"}}],
        "analysis": {
            "interval": "15s",
            "failureThreshold": 2,
            "minRequests": 20,
            "prometheus": {"address": "http://prometheus.monitoring:9090"},
            "metrics": [{"name": "error-rate", "template": "error-rate", "max": 5}],
        },
    },
}


class Kind:
    """A kind cluster through pytest-kind, with kubectl on its kubeconfig."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.cluster.kubeconfig_path), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def status(self) -> dict[str, Any]:
        rollout = json.loads(self.kubectl("-n", "shop", "get", "canaryrollout", "web", "-o", "json"))
        return dict(rollout.get("status") or {})

    def reasons(self) -> list[str]:
        events = json.loads(self.kubectl("-n", "shop", "get", "events", "-o", "json"))["items"]
        return [e["reason"] for e in events if e["involvedObject"].get("kind") == "CanaryRollout"]

    def wait(self, what: str, accept: Callable[[dict[str, Any]], bool], timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if accept(status):
                return status
            time.sleep(2)
        pytest.fail(f"timed out waiting for {what}; status: {json.dumps(self.status())}")


@pytest.fixture(scope="module")
def kind(docker: str, request: pytest.FixtureRequest) -> Iterator[Kind]:
    pytest_kind = pytest.importorskip("pytest_kind", reason="pytest-kind is not installed: pip install -e '.[e2e]'")
    for tool in ("kubectl", "helm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH")
    image = request.getfixturevalue("image")  # built only once the tools are known to be there
    build = [docker, "build", "-t", SAMPLE_IMAGE, str(SAMPLE)]
    if base := os.environ.get("CANARY_PYTHON_IMAGE"):
        build[2:2] = ["--build-arg", f"PYTHON_IMAGE={base}"]
    subprocess.run(build, check=True, timeout=600)
    cluster = pytest_kind.KindCluster("canary-e2e")
    cluster.create()
    try:
        cluster.load_docker_image(image)
        cluster.load_docker_image(SAMPLE_IMAGE)
        yield Kind(cluster)
    finally:
        cluster.delete()


@pytest.fixture(scope="module")
def installed(kind: Kind, image: str) -> Kind:
    repository, tag = image.rsplit(":", 1)
    kind.kubectl("apply", "-f", str(helpers.ROOT / "charts" / "canary-operator" / "crds"))
    subprocess.run(
        [
            "helm", "install", "canary-operator", str(helpers.ROOT / "charts" / "canary-operator"),
            "--kubeconfig", str(kind.cluster.kubeconfig_path), "-n", "canary-system", "--create-namespace",
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", "image.pullPolicy=Never", "--wait", "--timeout", "5m",
        ],
        check=True,
        timeout=400,
    )  # fmt: skip
    manifests = (SAMPLE / "manifests.yaml").read_text()
    manifests = manifests.replace("SAMPLE_IMAGE", SAMPLE_IMAGE).replace("PROMETHEUS_IMAGE", PROMETHEUS_IMAGE)
    kind.kubectl("apply", "-f", "-", stdin=manifests)
    kind.kubectl("-n", "shop", "rollout", "status", "deployment/web", "--timeout=300s")
    kind.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(ROLLOUT))
    kind.wait("the operator to take over web", lambda status: status.get("phase") == "Stable")
    return kind


def test_a_healthy_release_is_promoted(installed: Kind) -> None:
    installed.kubectl("-n", "shop", "set", "env", "deployment/web", "RELEASE=2")
    status = installed.wait("the promotion", lambda status: status.get("phase") in ("Succeeded", "RolledBack"))
    assert status["phase"] == "Succeeded", status.get("message")
    assert installed.reasons().count("Promoted") == 1


def test_a_release_failing_20_percent_of_requests_is_rolled_back(installed: Kind) -> None:
    installed.kubectl("-n", "shop", "set", "env", "deployment/web", "ERROR_PERCENT=20")
    status = installed.wait("the rollback", lambda status: status.get("phase") in ("Succeeded", "RolledBack"))
    assert status["phase"] == "RolledBack", status.get("message")
    assert "RolledBack" in installed.reasons()
