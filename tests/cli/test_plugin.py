"""`kubectl canary` run by the real kubectl against the emulated cluster.

The statuses shown are written by the real state machine (tests/helpers.World)
driven through a release, then stored in the cluster through the status
subresource, exactly where the operator writes them.
"""

from __future__ import annotations

import datetime
import http.server
import io
import json
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import helpers
import pytest
import yaml
from helpers import V1, V2, World

from canary_bench import cluster as clusters
from canary_operator import cli, models, rollouts

Verdict = models.Verdict
Kubectl = Callable[..., subprocess.CompletedProcess[str]]
ERRORS_QUERY = 'sum(rate(http_requests_total{namespace="shop",pod=~"web-canary-.*",code=~"5.."}[10s]))'


def check(verdict: Verdict, at: datetime.datetime, weight: int = 10) -> models.CheckRecord:
    """A check as the judge records it: both metrics, the numbers and the PromQL."""
    bad = verdict is Verdict.FAIL
    errors = models.MetricResult(
        name="error-rate",
        verdict=verdict,
        reason=f"error-rate {'5.13% > 1%' if bad else '0.21% <= 1%'} (n=312)",
        canary=5.128 if bad else 0.21,
        primary=0.104,
        canary_requests=312.4,
        primary_requests=2808.7,
        limit="<= 1%",
        query=ERRORS_QUERY,
    )
    latency = models.MetricResult(
        name="latency-p99",
        verdict=Verdict.PASS if verdict is not Verdict.INCONCLUSIVE else verdict,
        reason="latency-p99 120ms <= 500ms",
        canary=120.0,
        primary=118.0,
        canary_requests=312.4,
        primary_requests=2808.7,
        limit="<= 500ms",
    )
    cause = "InsufficientTraffic" if verdict is Verdict.INCONCLUSIVE else None
    return models.CheckRecord(
        at=at.isoformat(),
        window="10s",
        verdict=verdict,
        reason=errors.reason,
        cause=cause,
        weight=weight,
        metrics=[errors, latency],
    )


def released_world(spec: models.CanaryRolloutSpec | None = None) -> World:
    world = World(spec=spec or helpers.example_spec(interval="10s"), template=V1)
    world.tick()
    world.tick()
    world.template = V2
    return world


def run_until(world: World, verdict: Verdict, done: Any, limit: int = 120) -> None:
    for _ in range(limit):
        due = rollouts.needs(world.spec, world.status, world.revision(world.template), world.now).check
        world.tick(check(verdict, world.now, world.status.weight) if due else None)
        if done(world.status):
            return
    raise AssertionError(f"never reached the state; at {world.status.phase} step {world.status.current_step_index}")


def store(cluster: clusters.EmulatedCluster, status: models.CanaryRolloutStatus, name: str = "web") -> None:
    path = f"/apis/canary.dev/v1alpha1/namespaces/shop/canaryrollouts/{name}/status"
    cluster.patch(path, {"status": status.to_wire()})
    for arm, image in (("primary", "example/web:1.0"), ("canary", "example/web:2.0")):
        if cluster.deployment("shop", f"web-{arm}") is None:
            cluster.create("/apis/apps/v1/namespaces/shop/deployments", helpers.deployment(f"web-{arm}", 1, image))


def test_get_shows_a_canary_midway_with_step_n_of_n_images_and_the_last_check(
    cluster: clusters.EmulatedCluster, kubectl: Kubectl
) -> None:
    world = released_world()
    run_until(world, Verdict.PASS, lambda s: s.current_step_index == 1 and s.last_check is not None)
    store(cluster, world.status)

    shown = kubectl("canary", "get", "web", "-n", "shop")

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "Phase:       Progressing (step 2/4: analysing revision rev-2.0)" in lines
    assert "Step:        2/4 (pause 30s)" in lines
    assert "Weight:      10% (desired 10%)" in lines
    assert "Stable:      rev-1.0   example/web:1.0,example/sidecar:1.0" in lines
    assert "Canary:      rev-2.0   example/web:2.0,example/sidecar:1.0" in lines
    waiting = next(line for line in lines if line.startswith("Waiting for:"))
    assert "a check that shows no harm" in waiting and "then step 3/4 (setWeight 50%)" in waiting
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["METRIC", "VERDICT"])
    assert lines[header + 1].split() == ["error-rate", "Pass", "0.21%", "0.10%", "<=", "1%", "312/2809"]
    assert lines[header + 2].split() == ["latency-p99", "Pass", "120ms", "118ms", "<=", "500ms", "312/2809"]
    assert any(line.split()[:3] == ["Reconciling", "True", "Progressing"] for line in lines)


def test_list_shows_each_rollout_with_step_n_of_n(cluster: clusters.EmulatedCluster, kubectl: Kubectl) -> None:
    world = released_world()
    run_until(world, Verdict.PASS, lambda s: s.current_step_index == 2 and s.weight == 50)
    store(cluster, world.status)
    other = helpers.example_rollout()
    other["metadata"]["name"] = "api"
    assert cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(other)).returncode == 0
    idle = released_world()
    idle.template = V1
    store(cluster, idle.status, name="api")

    listed = kubectl("canary", "list", "-n", "shop")

    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0] == ["NAME", "PHASE", "STEP", "WEIGHT", "LAST", "VERDICT", "AGE"]
    assert rows[1][:4] == ["api", "Stable", "-", "0%"]
    assert rows[2][:5] == ["web", "Progressing", "3/4", "50%", "Pass"]
    everywhere = kubectl("canary", "list", "-A")
    assert everywhere.stdout.splitlines()[1].split()[:3] == ["shop", "api", "Stable"]
    empty = kubectl("canary", "list", "-n", "default")
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "No resources found in default namespace.\n")


def test_history_and_explain_after_a_rollback_give_the_numbers_and_the_promql(
    cluster: clusters.EmulatedCluster, kubectl: Kubectl
) -> None:
    world = released_world()
    run_until(world, Verdict.FAIL, lambda s: s.phase is models.Phase.ROLLED_BACK)
    store(cluster, world.status)
    release = world.status.releases[-1]

    history = kubectl("canary", "history", "web", "-n", "shop")
    assert history.returncode == 0, history.stderr
    rows = history.stdout.splitlines()
    assert rows[0].split()[:4] == ["RELEASE", "REVISION", "OUTCOME", "STARTED"]
    assert rows[1].split()[:3] == [release.release_id, "rev-2.0", "RolledBack"]
    assert "error-rate 5.13% > 1% (n=312)" in rows[1]

    explained = kubectl("canary", "explain", "web", "-n", "shop")
    assert explained.returncode == 0, explained.stderr
    text = explained.stdout
    assert text.startswith("Revision rev-2.0 was rolled back at 2026-11-01 12:")
    assert f"(release {release.release_id})" in text
    assert "2 of the last 2 checks failed (failureThreshold 2)" in text
    assert "error-rate: Fail. Canary 5.13% over 312 requests, primary 0.10% over 2809 requests; limit <= 1%." in text
    assert "latency-p99: " not in text, "only the metrics that failed explain a rollback"
    assert f"      {ERRORS_QUERY}\n" in text
    assert "kubectl canary retry web runs it again" in text


def test_explain_a_rollback_by_the_counts_since_the_start_gives_those_counts(
    cluster: clusters.EmulatedCluster, kubectl: Kubectl
) -> None:
    # At low traffic the continuous test, not a failed check, usually rolls a bad canary back (make demo's does).
    world = released_world()
    run_until(world, Verdict.INCONCLUSIVE, lambda s: s.weight_settled_at is not None)
    found = models.Evidence(
        metric="error-rate",
        window="6s since the canary started",
        canary_bad=16,
        canary_requests=509,
        primary_bad=0,
        primary_requests=2036,
        p_value=0.003,
        verdict=Verdict.FAIL,
    )
    reason = "error-rate 3.14% > max 1% (16/509 over 6s since the canary started, always-valid p=0.003)"
    world.tick(
        evidence=models.EvidenceRecord(at=world.now.isoformat(), verdict=Verdict.FAIL, reason=reason, metrics=[found])
    )
    assert world.status.phase is models.Phase.ROLLED_BACK
    store(cluster, world.status)

    text = kubectl("canary", "explain", "web", "-n", "shop").stdout

    assert f"Why: {reason}" in text
    assert "checks failed" not in text
    assert "No check failed: the always-valid test of the counts since the canary started failed at 2026-11-01" in text
    assert (
        "  error-rate: canary 16 bad of 509 requests, primary 0 of 2036, over 6s since the canary started;"
        " always-valid p = 0.003." in text
    )
    assert "kubectl canary retry web runs it again" in text
    listed = kubectl("get", "canaryrollouts", "-n", "shop").stdout
    assert "Fail (error-rate, since the start)" in listed


def test_explain_a_promotion_on_checks_that_showed_no_harm_gives_the_last_of_them(
    cluster: clusters.EmulatedCluster, kubectl: Kubectl
) -> None:
    # The default pass rule (no-harm) promotes a low-traffic canary without a single passing check.
    world = released_world()
    for _ in range(400):
        due = rollouts.needs(world.spec, world.status, world.revision(world.template), world.now).check
        cleared = check(Verdict.INCONCLUSIVE, world.now, world.status.weight).model_copy(update={"cleared": True})
        world.tick(cleared if due else None)
        if world.status.phase is models.Phase.SUCCEEDED:
            break
    assert world.status.phase is models.Phase.SUCCEEDED
    store(cluster, world.status)

    text = kubectl("canary", "explain", "web", "-n", "shop").stdout

    assert text.startswith("Revision rev-2.0 was promoted at 2026-11-01"), text
    assert "The last check (no harm shown, not proven), at weight 50%" in text, text
    assert "  error-rate: Inconclusive. Canary 0.21% over 312 requests" in text, text
    shown = kubectl("canary", "get", "web", "-n", "shop").stdout
    assert "Last check:  Inconclusive (no harm shown: the step may advance) at 2026-11-01" in shown, shown


def test_explain_a_held_rollout_says_why_and_how_to_release_it(
    cluster: clusters.EmulatedCluster, kubectl: Kubectl
) -> None:
    world = released_world()
    run_until(world, Verdict.INCONCLUSIVE, lambda s: s.phase is models.Phase.PAUSED)
    store(cluster, world.status)

    text = kubectl("canary", "explain", "web", "-n", "shop").stdout

    assert text.startswith("Revision rev-2.0 is held at step 1/4, weight 10%: InsufficientTraffic.")
    assert "The last 3 checks: 3 inconclusive." in text
    assert "kubectl canary resume web releases it, kubectl canary abort web rolls it back." in text
    got = kubectl("canary", "get", "web", "-n", "shop").stdout
    assert "Waiting for: held (InsufficientTraffic) at weight 10%" in got
    assert "  inconclusive in a row: 3/3" in got


@pytest.mark.parametrize(
    ("command", "key", "value"),
    [
        (["promote"], "canary.dev/promote", "true"),
        (["promote", "--full"], "canary.dev/promote", "full"),
        (["abort"], "canary.dev/abort", "true"),
        (["retry"], "canary.dev/retry", "true"),
        (["pause"], "canary.dev/pause", "true"),
        (["resume"], "canary.dev/resume", "true"),
    ],
)
def test_a_control_command_writes_its_request_annotation_and_a_git_reapply_keeps_it(
    cluster: clusters.EmulatedCluster, kubectl: Kubectl, command: list[str], key: str, value: str
) -> None:
    done = kubectl("canary", *command, "web", "-n", "shop")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("canaryrollout.canary.dev/web ")

    reapplied = cluster.kubectl("apply", "-f", str(helpers.EXAMPLE))  # what a GitOps sync of the same file does

    assert reapplied.returncode == 0, reapplied.stderr
    rollout = cluster.rollout("shop", "web")
    assert rollout is not None
    annotations = rollout["metadata"]["annotations"]
    assert annotations[key] == value, "an apply without the annotation leaves a request it never set"
    assert key not in annotations["kubectl.kubernetes.io/last-applied-configuration"]


def test_a_reapply_that_changes_the_spec_keeps_the_pending_request(
    cluster: clusters.EmulatedCluster, kubectl: Kubectl
) -> None:
    assert kubectl("canary", "pause", "web", "-n", "shop").returncode == 0
    changed = helpers.example_rollout()
    changed["spec"]["analysis"]["interval"] = "20s"

    reapplied = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(changed))

    assert reapplied.returncode == 0 and "configured" in reapplied.stdout
    rollout = cluster.rollout("shop", "web")
    assert rollout is not None
    assert rollout["spec"]["analysis"]["interval"] == "20s"
    assert rollout["metadata"]["annotations"]["canary.dev/pause"] == "true"


def test_a_missing_rollout_and_an_unknown_command_fail_as_kubectl_does(kubectl: Kubectl) -> None:
    missing = kubectl("canary", "get", "nope", "-n", "shop")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == 'Error from server (NotFound): canaryrollouts.canary.dev "nope" not found\n'
    for command in ("promote", "abort", "history", "explain"):
        answer = kubectl("canary", command, "nope", "-n", "shop")
        assert answer.returncode == 1 and "NotFound" in answer.stderr, command
    unknown = kubectl("canary", "frobnicate", "web")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith('error: unknown command "frobnicate" for "kubectl canary"')
    no_name = kubectl("canary", "get")
    assert no_name.returncode == 1 and no_name.stderr.startswith("error: the following arguments are required: NAME")


def test_the_context_and_namespace_come_from_the_kubeconfig(
    cluster: clusters.EmulatedCluster, kubectl: Kubectl
) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["contexts"].append(
        {"name": "shop", "context": {"cluster": "emulated", "user": "emulated", "namespace": "shop"}}
    )
    cluster.kubeconfig.write_text(yaml.safe_dump(config))

    assert kubectl("canary", "get", "web").returncode == 1, "the current context's namespace is default"
    assert kubectl("canary", "get", "web", "--context", "shop").returncode == 0
    wrong = kubectl("canary", "get", "web", "--context", "nowhere")
    assert (wrong.returncode, wrong.stderr) == (1, 'error: context "nowhere" does not exist\n')
    missing = kubectl("canary", "list", "--kubeconfig", "/nonexistent/config")
    assert missing.returncode == 1 and "no such file" in missing.stderr


class _Forbidding(http.server.BaseHTTPRequestHandler):
    """An API server that refuses everything, as RBAC does to a user without access."""

    def _refuse(self) -> None:
        body = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Forbidden",
                "code": 403,
                "message": 'canaryrollouts.canary.dev "web" is forbidden: User "dev" cannot get resource'
                ' "canaryrollouts" in API group "canary.dev" in the namespace "shop"',
            }
        ).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PATCH = _refuse

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def forbidding_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Forbidding)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_no_access_is_reported_as_forbidden(
    cluster: clusters.EmulatedCluster, kubectl: Kubectl, forbidding_server: str
) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = forbidding_server
    cluster.kubeconfig.write_text(yaml.safe_dump(config))

    for command in (["get", "web"], ["abort", "web"]):
        refused = kubectl("canary", *command, "-n", "shop")
        assert refused.returncode == 1
        assert refused.stderr.startswith('Error from server (Forbidden): canaryrollouts.canary.dev "web" is forbidden')


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_watch_redraws_in_place_and_only_when_something_changed(
    cluster: clusters.EmulatedCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    world = released_world()
    run_until(world, Verdict.PASS, lambda s: s.current_step_index == 1 and s.last_check is not None)
    store(cluster, world.status)
    screen, ticks = _Terminal(), []

    def between_reads(seconds: float) -> None:
        ticks.append(seconds)
        if len(ticks) == 1:  # the operator moves on between two reads
            run_until(world, Verdict.PASS, lambda s: s.current_step_index == 2 and s.weight == 50)
            store(cluster, world.status)
        elif len(ticks) == 3:
            raise KeyboardInterrupt

    argv = ["get", "web", "-n", "shop", "--watch", "--interval", "0.5", "--kubeconfig", str(cluster.kubeconfig)]
    code = cli.run(argv, screen, io.StringIO(), sleep=between_reads)

    drawn = screen.getvalue()
    assert code == 0 and ticks == [0.5, 0.5, 0.5]
    assert drawn.count("\x1b[2J") == 1, "the screen is cleared once, not on every frame"
    frames = drawn.split("\x1b[H")[1:]
    assert len(frames) == 2, "three reads, two different states, two frames"
    assert "Step:        2/4" in frames[0] and "Step:        3/4 (setWeight 50%)" in frames[1]
    assert all(line.endswith("\x1b[K") for line in frames[1].split("\n")[:-1])
    assert frames[1].endswith("\x1b[J"), "what the longer previous frame left below is cleared"


def test_kubectl_get_shows_step_n_of_n_and_describe_shows_readable_keys_and_whole_counts(
    cluster: clusters.EmulatedCluster,
) -> None:
    world = released_world()
    run_until(world, Verdict.FAIL, lambda s: s.failed_checks.get("error-rate") == 1)
    store(cluster, world.status)

    listed = cluster.kubectl("get", "canaryrollouts", "-n", "shop").stdout.splitlines()
    assert listed[0].split()[:3] == ["NAME", "PHASE", "STEP"]
    assert listed[1].split()[:3] == ["web", "Progressing", "1/4"]

    described = cluster.kubectl("describe", "canaryrollout", "web", "-n", "shop").stdout
    assert re.search(r"Failed Checks:\n\s+Count:\s+1\n\s+Metric:\s+error-rate\n", described), described
    assert "Error - Rate" not in described, "no metric name as a map key"
    assert re.search(r"Canary Requests:\s+312\n", described)
    assert "312.4" not in described
