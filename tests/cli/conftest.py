"""An emulated cluster with the example CanaryRollout, and the real kubectl finding the plugin on PATH."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Callable

import helpers
import pytest

from canary_bench import cluster as clusters

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cluster(cluster: clusters.EmulatedCluster) -> clusters.EmulatedCluster:
    """The cluster of tests/conftest.py with the example applied, as a user would with kubectl."""
    applied = cluster.kubectl("apply", "-f", str(helpers.EXAMPLE))
    assert applied.returncode == 0, applied.stderr
    return cluster


@pytest.fixture
def kubectl(cluster: clusters.EmulatedCluster) -> Kubectl:
    """kubectl as a user runs it: KUBECONFIG in the environment, kubectl-canary somewhere on PATH."""
    plugin_dir = pathlib.Path(sys.executable).parent
    assert (plugin_dir / "kubectl-canary").exists(), "pip install -e . installs the kubectl-canary script"
    env = {
        **os.environ,
        "PATH": f"{plugin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(cluster.kubeconfig),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [clusters.find_kubectl(), *args], capture_output=True, text=True, env=env, timeout=60, check=False
        )

    return run
