"""The hostile-input table, against the running operator: what a careless or hostile tenant writes, and what
the user sees (refused by the CRD schema with a message, a specific condition and Warning Event, or a rollout
that works), with nothing of anyone else's touched.

One emulated cluster and one real operator process serve every case, each case in a namespace of its own,
all applied at once: the table costs about as much as one closed-loop scenario.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import deployment

from canary_bench import cluster as clusters
from canary_operator import kube, ownership

pytestmark = pytest.mark.slow

# Nothing listens there: checks are inconclusive at once (the table is about admission and ownership).
PROMETHEUS = "http://127.0.0.1:9"
VICTIMS = "victims"
Body = dict[str, Any]


def rollout(name: str = "web", target: str = "web") -> Body:
    return {
        "apiVersion": "canary.dev/v1alpha1",
        "kind": "CanaryRollout",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "service": {"port": 80, "targetPort": 8080},
            "trafficRouting": {"replicas": {}},
            "steps": [{"setWeight": 20}, {"pause": {}}],
            "analysis": {
                "interval": "1s",
                "prometheus": {"address": PROMETHEUS, "timeout": "1s"},
                "metrics": [{"name": "error-rate", "template": "error-rate", "max": 1}],
            },
        },
    }


def target(name: str = "web", replicas: int = 2, labels: dict[str, str] | None = None) -> Body:
    manifest = deployment(name, replicas=replicas)
    manifest["metadata"].pop("namespace")
    manifest["metadata"]["labels"] = labels or {}
    return manifest


def service(name: str) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"team": "someone-else"}},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def setting(path: str, value: Any) -> Callable[[Body], None]:
    def change(manifest: Body) -> None:
        node: Any = manifest
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(leaf) if leaf.isdigit() else leaf] = value

    return change


@dataclasses.dataclass(frozen=True)
class Rejected:
    """The API server refuses the CanaryRollout (422) and says why."""

    says: str


@dataclasses.dataclass(frozen=True)
class Blocked:
    """Stalled with this reason, one Warning Event with it, and no write by the rollout."""

    reason: str
    says: str


@dataclasses.dataclass(frozen=True)
class Works:
    """Taken over: Stable, the target at 0, the primary serving, the target claimed."""

    primary: str = "web-primary"
    replicas: int = 2


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    outcome: Rejected | Blocked | Works
    change: Callable[[Body], None] = lambda manifest: None
    objects: tuple[Body, ...] = (target(),)
    first: tuple[Body, ...] = ()  # rollouts that run (Stable) before this case's own
    name: str = "web"


LONG = "a" * 55

CASES = [
    # ---- names that become object names, labels and path segments
    Case(
        "traversal", Rejected("spec.targetRef.name"), setting("spec.targetRef.name", "../../victims/deployments/victim")
    ),
    Case("traversal-encoded", Rejected("spec.targetRef.name"), setting("spec.targetRef.name", "..%2Fvictims")),
    Case("dot-dot", Rejected("spec.targetRef.name"), setting("spec.targetRef.name", "..")),
    Case("empty-target", Rejected("spec.targetRef.name"), setting("spec.targetRef.name", "")),
    Case("target-56", Rejected("Too long: may not be more than 55"), setting("spec.targetRef.name", "a" * 56)),
    Case("target-upper", Rejected("spec.targetRef.name"), setting("spec.targetRef.name", "Web")),
    Case("target-digit-first", Rejected("spec.targetRef.name"), setting("spec.targetRef.name", "1web")),
    Case("target-space", Rejected("spec.targetRef.name"), setting("spec.targetRef.name", "web app")),
    Case("target-slash", Rejected("spec.targetRef.name"), setting("spec.targetRef.name", "web/primary")),
    Case("target-dot", Rejected("spec.targetRef.name"), setting("spec.targetRef.name", "web.v1")),
    Case("target-kind", Rejected("spec.targetRef.kind"), setting("spec.targetRef.kind", "StatefulSet")),
    Case("target-api", Rejected("spec.targetRef.apiVersion"), setting("spec.targetRef.apiVersion", "v1")),
    Case("rollout-64", Rejected("metadata.name"), setting("metadata.name", "r" * 64)),
    Case("metric-name-space", Rejected("name"), setting("spec.analysis.metrics.0.name", "error rate")),
    Case("metric-name-64", Rejected("name"), setting("spec.analysis.metrics.0.name", "m" * 64)),
    Case("metric-name-quote", Rejected("name"), setting("spec.analysis.metrics.0.name", 'x"}[1m]')),
    # ---- durations that overflowed, or had no bound
    Case("interval-overflow", Rejected("spec.analysis.interval"), setting("spec.analysis.interval", "9999999999w")),
    Case("interval-too-long", Rejected("spec.analysis.interval"), setting("spec.analysis.interval", "1m" * 17)),
    Case("interval-negative", Rejected("spec.analysis.interval"), setting("spec.analysis.interval", "-1s")),
    Case("interval-no-unit", Rejected("spec.analysis.interval"), setting("spec.analysis.interval", "10")),
    Case("interval-precision", Rejected("spec.analysis.interval"), setting("spec.analysis.interval", "1.12345s")),
    Case(
        "timeout-overflow",
        Rejected("spec.analysis.prometheus.timeout"),
        setting("spec.analysis.prometheus.timeout", "9999999999w"),
    ),
    Case("pause-overflow", Rejected("duration"), setting("spec.steps.1.pause.duration", "99999999d")),
    Case(
        "extension-overflow",
        Rejected("maxStepExtension"),
        setting("spec.analysis.maxStepExtension", "999999999s"),
    ),
    Case(
        "slo-window-overflow",
        Rejected("window"),
        setting("spec.slo", {"objective": 99.9, "window": "9999999999w"}),
    ),
    Case(
        "burn-short-overflow",
        Rejected("short"),
        setting("spec.slo", {"objective": 99.9, "burnRate": {"short": "9999999999w"}}),
    ),
    Case("metric-interval-overflow", Rejected("interval"), setting("spec.analysis.metrics.0.interval", "9" * 12 + "h")),
    # ---- counts
    Case("failure-threshold-0", Rejected("failureThreshold"), setting("spec.analysis.failureThreshold", 0)),
    Case("failure-threshold-101", Rejected("failureThreshold"), setting("spec.analysis.failureThreshold", 101)),
    Case("failure-threshold-huge", Rejected("failureThreshold"), setting("spec.analysis.failureThreshold", 10**15)),
    Case("inconclusive-huge", Rejected("inconclusiveThreshold"), setting("spec.analysis.inconclusiveThreshold", 10**6)),
    Case("min-requests-negative", Rejected("minRequests"), setting("spec.analysis.minRequests", -1)),
    Case("min-requests-huge", Rejected("minRequests"), setting("spec.analysis.minRequests", 10**12)),
    Case("weight-150", Rejected("setWeight"), setting("spec.steps.0.setWeight", 150)),
    Case("weight-negative", Rejected("setWeight"), setting("spec.steps.0.setWeight", -1)),
    Case("steps-101", Rejected("steps"), setting("spec.steps", [{"setWeight": 10}] * 101)),
    Case(
        "metrics-21",
        Rejected("metrics"),
        setting("spec.analysis.metrics", [{"name": f"m{i}", "template": "error-rate", "max": 1} for i in range(21)]),
    ),
    Case("port-0", Rejected("spec.service.port"), setting("spec.service.port", 0)),
    Case("port-70000", Rejected("spec.service.port"), setting("spec.service.port", 70000)),
    Case("confidence-1", Rejected("confidence"), setting("spec.analysis.metrics.0.confidence", 1.0)),
    Case("max-ratio-huge", Rejected("maxRatio"), setting("spec.analysis.metrics.0.maxRatio", 10.0**6)),
    Case(
        "query-5000",
        Rejected("query"),
        setting("spec.analysis.metrics.0", {"name": "q", "query": "x" * 5000, "max": 1}),
    ),
    Case("step-both", Rejected("oneOf"), setting("spec.steps.0", {"setWeight": 10, "pause": {}})),
    Case("routing-none", Rejected("oneOf"), setting("spec.trafficRouting", {})),
    # ---- what only the model can say: InvalidSpec at the first tick, before any write
    Case(
        "timeout-zero",
        Blocked("InvalidSpec", "must be above 0s"),
        setting("spec.analysis.prometheus.timeout", "0s"),
    ),
    Case(
        "progress-deadline-400d",
        Blocked("InvalidSpec", "maximum of 366d"),
        setting("spec.progressDeadline", "400d"),
    ),
    Case("progress-deadline-overflow", Rejected("progressDeadline"), setting("spec.progressDeadline", "9999999999w")),
    Case("interval-zero", Blocked("InvalidSpec", "minimum of 1s"), setting("spec.analysis.interval", "0s")),
    Case("interval-2d", Blocked("InvalidSpec", "maximum of 1d"), setting("spec.analysis.interval", "2d")),
    Case("pause-99999w", Blocked("InvalidSpec", "maximum of 366d"), setting("spec.steps.1.pause.duration", "99999w")),
    Case(
        "extension-500d", Blocked("InvalidSpec", "maximum of 366d"), setting("spec.analysis.maxStepExtension", "500d")
    ),
    Case(
        "slo-window-30s",
        Blocked("InvalidSpec", "minimum of 1m"),
        setting("spec.slo", {"objective": 99.9, "window": "30s"}),
    ),
    Case(
        "address-file",
        Rejected("spec.analysis.prometheus.address"),
        setting("spec.analysis.prometheus.address", "file:///etc/passwd"),
    ),
    Case(
        "address-garbage",
        Rejected("spec.analysis.prometheus.address"),
        setting("spec.analysis.prometheus.address", "not a url"),
    ),
    Case(
        "address-credentials",
        Rejected("spec.analysis.prometheus.address"),
        setting("spec.analysis.prometheus.address", "http://user:secret@127.0.0.1:9"),
    ),
    Case(
        "secret-ref-traversal",
        Rejected("secretRef.name"),
        setting("spec.analysis.prometheus.secretRef", {"name": "../../kube-system/secrets/x"}),
    ),
    Case(
        "query-variable",
        Blocked("InvalidSpec", "unknown query variable(s) secret"),
        setting("spec.analysis.metrics.0", {"name": "q", "query": "up{x='{{ secret }}'}", "max": 1}),
    ),
    Case(
        "min-above-max",
        Blocked("InvalidSpec", "min 5.0 is above max 1.0"),
        setting("spec.analysis.metrics.0", {"name": "q", "template": "error-rate", "max": 1, "min": 5}),
    ),
    # ---- other people's objects
    Case(
        "target-is-another-primary",
        Blocked("ObjectConflict", "CanaryRollout web"),
        setting("spec.targetRef.name", "web-primary"),
        first=(rollout(),),
        name="evil",
    ),
    Case(
        "target-is-another-canary",
        Blocked("ObjectConflict", "CanaryRollout web"),
        setting("spec.targetRef.name", "web-canary"),
        first=(rollout(),),
        name="evil",
    ),
    Case(
        "second-rollout-same-target",
        Blocked("TargetClaimed", "one Deployment takes one"),
        first=(rollout(),),
        name="web2",
    ),
    Case(
        "foreign-canary-deployment",
        Blocked("ObjectConflict", "Deployment web-canary"),
        objects=(target(), target("web-canary", 1)),
    ),
    Case(
        "foreign-primary-deployment",
        Blocked("ObjectConflict", "Deployment web-primary"),
        objects=(target(), target("web-primary", 1)),
    ),
    Case("foreign-apex-service", Blocked("ObjectConflict", "Service web "), objects=(target(), service("web"))),
    Case(
        "foreign-primary-service",
        Blocked("ObjectConflict", "Service web-primary"),
        objects=(target(), service("web-primary")),
    ),
    Case(
        "foreign-canary-service",
        Blocked("ObjectConflict", "Service web-canary"),
        objects=(target(), service("web-canary")),
    ),
    Case(
        "target-labelled-as-an-arm",
        Blocked("ObjectConflict", "primary or canary"),
        objects=(target(labels={"canary.dev/rollout": "gone"}),),
    ),
    # ---- what works
    Case("plain", Works()),
    Case(
        "longest-target",
        Works(primary=f"{LONG}-primary"),
        setting("spec.targetRef.name", LONG),
        objects=(target(LONG),),
    ),
    Case("longest-rollout-name", Works(), setting("metadata.name", "r" * 63)),
    Case("zero-replicas", Works(replicas=0), objects=(target(replicas=0),)),
]


class Operator:
    """``python -m canary_operator`` against the cluster, killed at the end."""

    def __init__(self, cluster: clusters.EmulatedCluster, log: pathlib.Path) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "CANARY_TICK_SECONDS": "1",
            "CANARY_IDLE_TICK_SECONDS": "2",
            "CANARY_HTTP_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "canary_operator"], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> None:
        if self.process.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
            raise AssertionError(f"the operator exited with {self.process.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)


@dataclasses.dataclass
class Table:
    cluster: clusters.EmulatedCluster
    operator: Operator
    answers: dict[str, tuple[int, Any]]  # case id -> (HTTP status, body) of creating its CanaryRollout
    before: dict[str, dict[tuple[str, str], Any]]  # case id -> fingerprints of objects not its own

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
        def alive_probe() -> Any:
            self.operator.alive()
            return probe()

        return self.cluster.wait_for(alive_probe, timeout=timeout, interval=0.25, message=what)


def namespace_of(case: Case) -> str:
    return f"case-{case.id}"


def fingerprint(obj: Body | None) -> Any:
    """What a write would change: spec, labels, annotations, owners (not the controller's status)."""
    if obj is None:
        return None
    meta = obj["metadata"]
    return json.dumps(
        [obj.get("spec"), meta.get("labels"), meta.get("annotations"), meta.get("ownerReferences")], sort_keys=True
    )


def others(cluster: clusters.EmulatedCluster, case: Case) -> dict[tuple[str, str], Any]:
    """Every object of the case's namespace but the rollout's own, and the victims' namespace."""
    namespace = namespace_of(case)
    own_target = case.outcome.__class__ is Works
    found: dict[tuple[str, str], Any] = {}
    for ns in (namespace, VICTIMS):
        for kind, path in (("Deployment", kube.deployment_path(ns)), ("Service", kube.service_path(ns))):
            for obj in cluster.list(path):
                name = obj["metadata"]["name"]
                if own_target and ns == namespace:
                    continue
                found[(f"{ns}/{kind}", name)] = fingerprint(obj)
    return found


def wait_settled(cluster: clusters.EmulatedCluster, namespace: str) -> None:
    def settled() -> bool:
        return all(
            (d.get("status") or {}).get("observedGeneration") == d["metadata"].get("generation")
            for d in cluster.list(kube.deployment_path(namespace))
        )

    cluster.wait_for(settled, timeout=30, interval=0.25, message=f"Deployments of {namespace} settled")


@pytest.fixture(scope="module")
def table() -> Iterator[Table]:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="hostile-"))
    with clusters.EmulatedCluster(ready_delay=0.1, request_log_limit=100) as cluster:
        cluster.create_namespace(VICTIMS)
        cluster.create(kube.deployment_path(VICTIMS), {**target("victim"), "metadata": {"name": "victim"}})
        operator = Operator(cluster, workdir / "operator.log")
        try:
            for case in CASES:
                namespace = namespace_of(case)
                cluster.create_namespace(namespace)
                for obj in case.objects:
                    path = (
                        kube.deployment_path(namespace) if obj["kind"] == "Deployment" else kube.service_path(namespace)
                    )
                    cluster.create(path, obj)
                for first in case.first:
                    cluster.create(rollout_collection(namespace), first)
            table = Table(cluster, operator, {}, {})
            for case in CASES:
                for first in case.first:
                    namespace, name = namespace_of(case), first["metadata"]["name"]
                    table.wait_for(
                        f"{namespace}/{name} Stable",
                        functools.partial(lambda ns, n: phase(cluster, ns, n) == "Stable", namespace, name),
                        timeout=60,
                    )
                wait_settled(cluster, namespace_of(case))
            for case in CASES:
                table.before[case.id] = others(cluster, case)
                manifest = copy.deepcopy(rollout(case.name))
                case.change(manifest)
                table.answers[case.id] = cluster.request("POST", rollout_collection(namespace_of(case)), manifest)
            yield table
            operator.alive()
        finally:
            operator.stop()


def rollout_collection(namespace: str) -> str:
    return f"/apis/canary.dev/v1alpha1/namespaces/{namespace}/canaryrollouts"


def the_rollout(cluster: clusters.EmulatedCluster, namespace: str, name: str) -> Body | None:
    return cluster.get(f"{rollout_collection(namespace)}/{name}")


def phase(cluster: clusters.EmulatedCluster, namespace: str, name: str) -> str | None:
    return ((the_rollout(cluster, namespace, name) or {}).get("status") or {}).get("phase")


def test_the_table_has_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_input(table: Table, case: Case) -> None:
    cluster, namespace = table.cluster, namespace_of(case)
    code, answer = table.answers[case.id]
    manifest_name = (answer or {}).get("metadata", {}).get("name", case.name) if code < 300 else case.name
    match case.outcome:
        case Rejected(says=says):
            assert code == 422, f"expected the schema to refuse it, got {code}: {answer}"
            assert says in answer["message"], answer["message"]
        case Blocked(reason=reason, says=says):
            assert code == 201, answer
            # Stalled, and its outbox posted: the Event follows the status write that records it.
            status = table.wait_for(
                f"{case.id}: Stalled {reason}, its Event posted",
                lambda: (
                    (found := stalled_status(cluster, namespace, manifest_name, reason))
                    and not found.get("pendingEvents")
                    and found
                ),
            )
            assert says in status["message"], status["message"]
            warnings = [
                e
                for e in cluster.events(namespace)
                if e.get("reason") == reason and e["involvedObject"]["name"] == manifest_name
            ]
            assert len(warnings) == 1 and warnings[0]["type"] == "Warning", warnings  # once, however many ticks
            assert not any(
                d["metadata"]["name"].endswith(("-primary", "-canary")) and ownership.owned_by(d, the_body(table, case))
                for d in cluster.list(kube.deployment_path(namespace))
            ), "the blocked rollout created nothing"
        case Works(primary=primary, replicas=replicas):
            assert code == 201, answer
            table.wait_for(f"{case.id}: Stable", lambda: phase(cluster, namespace, manifest_name) == "Stable")
            body = the_body(table, case)
            target_name = body["spec"]["targetRef"]["name"]
            web = cluster.deployment(namespace, target_name)
            assert web is not None and web["spec"]["replicas"] == 0
            assert ownership.claimed_by(web, body)
            arm = cluster.deployment(namespace, primary)
            assert arm is not None and arm["spec"]["replicas"] == replicas
    assert others(cluster, case) == table.before[case.id], "objects not the rollout's own were written"


def the_body(table: Table, case: Case) -> Body:
    code, answer = table.answers[case.id]
    found = the_rollout(table.cluster, namespace_of(case), answer["metadata"]["name"])
    assert found is not None
    return found


def stalled_status(cluster: clusters.EmulatedCluster, namespace: str, name: str, reason: str) -> Body | None:
    status = (the_rollout(cluster, namespace, name) or {}).get("status") or {}
    stalled = [c for c in status.get("conditions", []) if c["type"] == "Stalled" and c["status"] == "True"]
    return status if stalled and stalled[0]["reason"] == reason else None


def test_a_target_at_zero_replicas_gives_the_canary_no_traffic_at_set_weight_20(table: Table) -> None:
    cluster, namespace = table.cluster, namespace_of(next(c for c in CASES if c.id == "zero-replicas"))
    table.wait_for("zero-replicas Stable", lambda: phase(cluster, namespace, "web") == "Stable")
    cluster.patch(
        kube.deployment_path(namespace, "web"),
        [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "example/web:2.0"}],
        "json",
    )
    status = table.wait_for(
        "the canary started",
        lambda: (
            (s := (the_rollout(cluster, namespace, "web") or {}).get("status"))
            and s.get("phase") == "Progressing"
            and s
        ),
    )
    deadline = time.monotonic() + 3  # a few ticks at weight 20: the canary must stay at 0 pods
    while time.monotonic() < deadline:
        canary = cluster.deployment(namespace, "web-canary")
        assert canary is not None and canary["spec"]["replicas"] == 0
        time.sleep(0.2)
    assert (the_rollout(cluster, namespace, "web") or {})["status"].get("weight", 0) == 0, status


def test_deleting_the_refused_second_rollout_leaves_the_first_and_its_target_alone(table: Table) -> None:
    cluster = table.cluster
    case = next(c for c in CASES if c.id == "second-rollout-same-target")
    namespace = namespace_of(case)
    table.wait_for("web2 refused", lambda: stalled_status(cluster, namespace, "web2", "TargetClaimed"))
    cluster.delete(f"{rollout_collection(namespace)}/web2")
    table.wait_for("web2 gone", lambda: the_rollout(cluster, namespace, "web2") is None)
    web = cluster.deployment(namespace, "web")
    assert web is not None and web["spec"]["replicas"] == 0, "still taken over by the first rollout"
    assert phase(cluster, namespace, "web") == "Stable"
    primary = cluster.deployment(namespace, "web-primary")
    assert primary is not None and primary["spec"]["replicas"] == 2
