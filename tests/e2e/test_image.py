"""The image builds from the repository and runs the operator as the chart's non-root user."""

from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.e2e


def run(
    docker: str, image: str, *args: str, entrypoint: str | None = None, env: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    command = [docker, "run", "--rm", "--network=none", *(f"--env={pair}" for pair in env)]
    if entrypoint is not None:
        command.append(f"--entrypoint={entrypoint}")
    return subprocess.run([*command, image, *args], capture_output=True, text=True, timeout=120, check=False)


def test_the_image_runs_the_operators_entry_point(docker: str, image: str) -> None:
    shown = run(docker, image, "--help")
    assert shown.returncode == 0, shown.stderr
    assert "usage: canary-operator" in shown.stdout and "--peering" in shown.stdout


def test_the_image_runs_as_uid_10001_with_the_operator_installed(docker: str, image: str) -> None:
    probe = "import os, canary_operator.main, kopf; print(os.getuid(), os.getgid())"
    shown = run(docker, image, "-c", probe, entrypoint="python3")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["10001", "10001"]


def test_a_bad_peering_setting_stops_the_operator_with_a_clear_message(docker: str, image: str) -> None:
    shown = run(docker, image, env=("CANARY_PEERING_LIFETIME=1",))
    assert shown.returncode != 0
    assert "CANARY_PEERING_LIFETIME must be at least 2 seconds" in shown.stderr
