"""The README's "Install in a cluster" block, applied as written to a fresh emulated cluster, in order.

The block is read from README.md itself, so the test follows every edit of it. ``kubectl`` lines
run the real kubectl; the ``helm install`` line is carried out the way Helm does it: the chart's
``crds/`` first, the namespace if ``--create-namespace``, then the manifests rendered by the real
Helm library (helm-python-sdk) with the line's ``--set`` values, applied in order. Then the
operator runs with the environment the chart gave its container, and takes over the example.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import helpers
import pytest
import yaml

from canary_bench import cluster as clusters

README = helpers.ROOT / "README.md"
REGISTRY = "registry.example"


def install_commands() -> list[list[str]]:
    """The shell commands of the README's install block: continuations joined, comments and placeholders resolved."""
    section = README.read_text().split("## Install in a cluster", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's install section has no sh block"
    text = block.group(1).replace("\\\n", " ").replace("<your registry>", REGISTRY)
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.strip()]


def set_values(assignments: list[str]) -> dict[str, Any]:
    """Helm's ``--set a.b=c`` as nested values (strings, as the README's values are)."""
    values: dict[str, Any] = {}
    for assignment in assignments:
        path, _, value = assignment.partition("=")
        *parents, leaf = path.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return values


def kubectl(cluster: clusters.EmulatedCluster, *args: str, stdin: str | None = None) -> str:
    done = cluster.kubectl(*args, stdin=stdin, cwd=helpers.ROOT)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr.strip()}"
    return done.stdout


def helm_install(cluster: clusters.EmulatedCluster, args: list[str]) -> list[dict[str, Any]]:
    """``helm install NAME CHART -n NS [--create-namespace] [--set k=v]...``: what Helm sends, in Helm's order."""
    positional, options, sets, create_namespace = [], {}, [], False
    words = iter(args)
    for word in words:
        if word in ("-n", "--namespace"):
            options["namespace"] = next(words)
        elif word == "--set":
            sets.append(next(words))
        elif word == "--create-namespace":
            create_namespace = True
        else:
            assert not word.startswith("-"), f"the test does not know helm's {word}"
            positional.append(word)
    name, chart_path = positional
    namespace = options["namespace"]
    kubectl(cluster, "apply", "-f", str(helpers.ROOT / chart_path / "crds"))
    if create_namespace:
        kubectl(
            cluster,
            "apply",
            "-f",
            "-",
            stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )
    with helm.Chart.load(helpers.ROOT / chart_path) as chart:
        rendered = chart.render(set_values(sets), name=name, namespace=namespace)
    objects = [
        obj
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for obj in yaml.safe_load_all(text)
        if obj
    ]
    kubectl(cluster, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(objects))
    return objects


@pytest.fixture
def fresh_cluster() -> Iterator[clusters.EmulatedCluster]:
    """No CRDs, only the namespaces every cluster has."""
    with clusters.EmulatedCluster(crd_paths=(), ready_delay=0.1) as cluster:
        yield cluster


@pytest.fixture
def installed(fresh_cluster: clusters.EmulatedCluster) -> list[dict[str, Any]]:
    """The README's block, run line by line; the objects the helm line installed."""
    chart_objects: list[dict[str, Any]] = []
    for command in install_commands():
        match command:
            case ["kubectl", *args]:
                kubectl(fresh_cluster, *args)
            case ["helm", "install", *args]:
                chart_objects = helm_install(fresh_cluster, args)
            case _:
                pytest.fail(f"the README's install block runs something the test does not know: {command}")
    return chart_objects


def test_the_readme_install_block_runs_on_a_fresh_cluster_as_written(
    fresh_cluster: clusters.EmulatedCluster, installed: list[dict[str, Any]]
) -> None:
    operator = fresh_cluster.get("/apis/apps/v1/namespaces/canary-system/deployments/canary-operator")
    assert operator is not None
    assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == f"{REGISTRY}/canary-operator:0.1.0"
    assert fresh_cluster.get("/apis/kopf.dev/v1/clusterkopfpeerings/canary-operator") is not None
    web = fresh_cluster.deployment("shop", "web")
    assert web is not None and web["spec"]["template"]["spec"]["containers"][0]["image"] == "example/web:1.1"
    assert fresh_cluster.rollout("shop", "web") is not None


@pytest.mark.slow
def test_the_operator_as_installed_takes_over_the_example(
    fresh_cluster: clusters.EmulatedCluster, installed: list[dict[str, Any]], tmp_path: Any
) -> None:
    [deployment] = [obj for obj in installed if obj["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env |= {"POD_ID": "canary-operator-0", "CANARY_HTTP_PORT": "0", "KUBECONFIG": str(fresh_cluster.kubeconfig)}
    log = tmp_path / "operator.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "canary_operator"], env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        # The status records the takeover before the operator acts on it: wait for the primary itself.
        primary = fresh_cluster.wait_for(
            lambda: (d := fresh_cluster.deployment("shop", "web-primary")) and d["spec"]["replicas"] == 9 and d,
            timeout=60,
            message="the operator to take over web with a 9-replica primary",
        )
        assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == "example/web:1.1"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
