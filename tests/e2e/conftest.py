"""The end-to-end tier: a real Docker engine and a kind cluster. Opt-in (``pytest --with-e2e``).

Nothing here can run on the project's build machines (no image can be pulled, kind downloads
its node image): every fixture skips with the reason when a piece is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import helpers
import pytest

VERSION = helpers.project_version()
IMAGE = f"canary-operator:{VERSION}"


@pytest.fixture(scope="session")
def docker() -> str:
    """The docker client (``CANARY_DOCKER`` to pick another); skips when no engine answers."""
    binary = os.environ.get("CANARY_DOCKER") or shutil.which("docker")
    if not binary:
        pytest.skip("docker is not installed")
    probe = subprocess.run([binary, "info"], capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no Docker engine answers ({probe.stderr.strip()[:200]})")
    return binary


@pytest.fixture(scope="session")
def image(docker: str) -> Iterator[str]:
    """The operator's image built from the repository's Dockerfile, as docs/release.md builds it.

    ``CANARY_PYTHON_IMAGE`` replaces the base image (e.g. a debootstrap stand-in where none can be
    pulled); ``CANARY_DOCKER_NETWORK`` gives the build a network (``host`` where the engine runs
    without a bridge).
    """
    command = [docker, "build", "-t", IMAGE, str(helpers.ROOT)]
    if base := os.environ.get("CANARY_PYTHON_IMAGE"):
        command[2:2] = ["--build-arg", f"PYTHON_IMAGE={base}"]
    if network := os.environ.get("CANARY_DOCKER_NETWORK"):
        command[2:2] = [f"--network={network}"]
    built = subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False, env={**os.environ, "DOCKER_BUILDKIT": "1"}
    )
    assert built.returncode == 0, built.stderr[-3000:]
    yield IMAGE
