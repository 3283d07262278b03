"""Manual control through `kubectl canary`, with the real operator, real Prometheus and the real kubectl.

The plugin is found by kubectl on PATH and writes request annotations; a
`kubectl apply` of the unchanged CanaryRollout (what a Git re-sync does) in
between must not cancel a pending request.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest
import yaml

from canary_bench import cluster as clusters
from canary_bench import stage as stages

pytestmark = pytest.mark.usefixtures("prometheus_tools")

# Holds for inconclusive checks (a scrape gap on a loaded machine) are not what these stories are about: a
# hold in the same tick as the request would have the request ignored (nothing waits for it while held).
PAUSED_PLAN = stages.Plan(steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}], inconclusive_threshold=1000)


def plugin(stage: stages.Stage, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl canary ...` as a user runs it: KUBECONFIG set, kubectl-canary on PATH."""
    assert stage.cluster is not None
    env = {
        **os.environ,
        "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(stage.cluster.kubeconfig),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    return subprocess.run(
        [clusters.find_kubectl(), "canary", *args, "-n", "shop"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def stage() -> Iterator[stages.Stage]:
    with stages.Stage(plan=PAUSED_PLAN) as started:
        started.wait_phase("Stable", timeout=30)
        started.wait_traffic()
        yield started


def test_a_pause_step_is_promoted_by_the_plugin_and_a_git_reapply_does_not_cancel_the_request(
    stage: stages.Stage,
) -> None:
    assert stage.prometheus is not None
    stage.set_image("example/web:2.0")
    stage.wait_status(
        "the pause step waiting for promote",
        lambda s: "waiting for annotation canary.dev/promote" in (s.get("message") or ""),
        timeout=60,
    )
    shown = plugin(stage, "get", "web")
    assert shown.returncode == 0, shown.stderr
    assert "Step:        2/3 (pause until promoted)" in shown.stdout
    assert "Waiting for: kubectl canary promote web (the pause step has no duration)" in shown.stdout
    listed = plugin(stage, "list").stdout.splitlines()
    assert listed[1].split()[:4] == ["web", "Progressing", "2/3", "20%"]

    stage.kill_operator()  # nobody acts on the request until the re-sync is done
    assert plugin(stage, "promote", "web").returncode == 0
    stage.apply(PAUSED_PLAN.manifest(stage.prometheus.url))  # the same manifest again, as Git holds it
    rollout = stage.rollout()
    assert rollout is not None and rollout["metadata"]["annotations"]["canary.dev/promote"] == "true"

    stage.start_operator()
    status = stage.wait_phase("Succeeded", timeout=90)

    assert status["stableRevision"] == status["canaryRevision"]
    promoted = stage.rollout()
    assert promoted is not None
    assert "canary.dev/promote" not in (promoted["metadata"].get("annotations") or {}), "acted on, then cleared"
    history = plugin(stage, "history", "web").stdout.splitlines()
    assert history[1].split()[1:3] == [status["canaryRevision"], "Promoted"]
    assert yaml.safe_load(stage.kubectl("get", "canaryrollout", "web", "-n", "shop", "-o", "yaml").stdout)


def test_a_canary_aborted_mid_rollout_is_rolled_back_and_a_retry_releases_it_again(stage: stages.Stage) -> None:
    stage.set_image("example/web:2.0")
    waiting = stage.wait_status(
        "the pause step waiting for promote",
        lambda s: "waiting for annotation canary.dev/promote" in (s.get("message") or ""),
        timeout=60,
    )
    revision = waiting["canaryRevision"]

    assert plugin(stage, "abort", "web").returncode == 0
    aborted = stage.wait_phase("RolledBack", timeout=15)

    assert aborted["rejectedRevision"] == revision
    assert aborted["lastRequest"]["request"] == "abort"
    explained = plugin(stage, "explain", "web").stdout
    assert explained.startswith(f"Revision {revision} was rolled back")

    assert plugin(stage, "retry", "web").returncode == 0
    stage.wait_status(
        "the retried release at its pause step",
        lambda s: (
            s.get("releaseId") != waiting["releaseId"]
            and "waiting for annotation canary.dev/promote" in (s.get("message") or "")
        ),
        timeout=60,
    )
    assert plugin(stage, "promote", "web").returncode == 0
    promoted = stage.wait_phase("Succeeded", timeout=60)
    assert promoted["stableRevision"] == revision
