"""Shared builders for the unit tests (plain data, no I/O)."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import pathlib
import tomllib
from collections.abc import Mapping
from typing import Any

import yaml

from canary_operator import models, observations, ownership, rollouts, workloads
from canary_operator.routing import replicas as replicas_router

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "canary-operator"

# Every (API group, resource, verb) the operator and Kopf use ("" is the core group), as recorded by the
# emulated API server over a whole rollout life (tests/security/test_rbac.py proves it).
OPERATOR_GRANTS = frozenset(
    {
        # Kopf watches the rollouts and patches its finalizer in; each tick reads one and patches its status.
        *(("canary.dev", "canaryrollouts", verb) for verb in ("get", "list", "watch", "patch")),
        ("canary.dev", "canaryrollouts/status", "patch"),
        # The arms, and the target it claims and scales.
        *(("apps", "deployments", verb) for verb in ("get", "list", "watch", "create", "patch", "delete")),
        *(("", "services", verb) for verb in ("get", "create", "patch", "delete")),
        ("", "secrets", "get"),  # analysis.prometheus.secretRef, by name only
        ("", "events", "create"),
        # Kopf notices when the CanaryRollout CRD appears or changes.
        *(("apiextensions.k8s.io", "customresourcedefinitions", verb) for verb in ("list", "watch")),
    }
)


# What each traffic router adds (chart value trafficRouters; all three by default).
ROUTER_GRANTS = frozenset(
    {
        *(("gateway.networking.k8s.io", "httproutes", verb) for verb in ("get", "patch")),
        *(("networking.istio.io", "virtualservices", verb) for verb in ("get", "patch")),
        ("networking.istio.io", "destinationrules", "get"),
        *(("networking.k8s.io", "ingresses", verb) for verb in ("get", "create", "patch", "delete")),
    }
)


AUTOSCALER_GRANTS = frozenset(("autoscaling", "horizontalpodautoscalers", verb) for verb in ("get", "create", "patch"))
PEERING_GRANTS = frozenset(("kopf.dev", "clusterkopfpeerings", verb) for verb in ("get", "list", "watch", "patch"))


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """The (group, resource, verb) triples a Role's or ClusterRole's rules grant."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


EXAMPLE = ROOT / "examples" / "web.yaml"


def project_version() -> str:
    """The operator's version: pyproject.toml's, which the chart's appVersion and the image tag follow."""
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def example_rollout() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLE.read_text()))


def example_spec(**analysis: Any) -> models.CanaryRolloutSpec:
    raw = copy.deepcopy(example_rollout()["spec"])
    raw["analysis"].update(analysis)
    return models.parse_spec(raw)


T0 = datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC)
V1 = {"spec": {"containers": [{"name": "web", "image": "example/web:1.0"}]}}
V2 = {"spec": {"containers": [{"name": "web", "image": "example/web:2.0"}]}}
V3 = {"spec": {"containers": [{"name": "web", "image": "example/web:3.0"}]}}


def record(
    verdict: models.Verdict, metric: str = "error-rate", at: datetime.datetime = T0, **extra: Any
) -> models.CheckRecord:
    result = models.MetricResult(name=metric, verdict=verdict, reason=f"{metric} {verdict.value}", canary=5.0, **extra)
    cause = "InsufficientTraffic" if verdict is models.Verdict.INCONCLUSIVE else None
    return models.CheckRecord(at=at.isoformat(), verdict=verdict, reason=result.reason, cause=cause, metrics=[result])


@dataclasses.dataclass
class World:
    """Plays the cluster for the pure state machine, as the I/O edge does: each tick's decision is recorded
    first, then the actions derived from the recorded status are applied to a few dataclasses (Deployments
    are ready at once, the router achieves the weight it is asked for). The clock is explicit; requests are
    annotations that stay until an action clears them."""

    spec: models.CanaryRolloutSpec
    template: dict[str, Any]
    target_replicas: int = 9
    now: datetime.datetime = T0
    status: models.CanaryRolloutStatus = dataclasses.field(default_factory=models.CanaryRolloutStatus)
    primary: observations.Workload | None = None
    primary_template: dict[str, Any] | None = None
    canary: observations.Workload | None = None
    canary_replicas: int = 0
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    budget_remaining: float | None = None
    budget_problem: str = ""
    primary_updates: int = 0
    events: list[models.EventRecord] = dataclasses.field(default_factory=list)
    gate_answers: list[models.GateRecord] = dataclasses.field(default_factory=list)  # handed in at the next tick

    def revision(self, template: dict[str, Any]) -> str:
        return f"rev-{template['spec']['containers'][0]['image'].rsplit(':', 1)[1]}"

    def request(self, kind: models.Request, value: str = "true") -> None:
        self.annotations[kind.annotation] = value

    def observe(
        self, check: models.CheckRecord | None, evidence: models.EvidenceRecord | None = None
    ) -> observations.Observations:
        ready_canary = self.canary.ready_replicas if self.canary else 0
        ready_primary = self.primary.ready_replicas if self.primary else 0
        total = ready_canary + ready_primary
        weight = round(100 * ready_canary / total) if total else 0
        needs = rollouts.needs(self.spec, self.status, self.revision(self.template), self.now)
        wanted = replicas_router.canary_replicas(needs.weight, needs.primary_replicas)
        return observations.Observations(
            generation=1,
            target=observations.Target(self.revision(self.template), self.template, self.target_replicas),
            primary=self.primary,
            canary=self.canary,
            traffic=observations.Traffic(
                weight,
                self.canary is not None
                and self.canary_replicas == wanted
                and self.canary.ready_replicas == self.canary_replicas,
            ),
            check=check,
            requests=tuple(
                observations.Request(kind, self.annotations[kind.annotation])
                for kind in models.Request
                if kind.annotation in self.annotations
            ),
            evidence=evidence,
            budget_remaining=self.budget_remaining if needs.budget else None,  # read only when needed, as the edge
            budget_problem=self.budget_problem if needs.budget else "",
            gates=tuple(self.gate_answers),
        )

    def tick(
        self,
        check: models.CheckRecord | None = None,
        advance: float = 1.0,
        evidence: models.EvidenceRecord | None = None,
    ) -> rollouts.Decision:
        seen = self.observe(check, evidence)
        self.gate_answers = []
        decision = rollouts.reconcile(self.spec, self.status, seen, self.now)
        self.status = decision.status  # recorded first ...
        for action in rollouts.derive(self.spec, self.status, seen):  # ... then acted on
            self.apply(action)
        self.events.extend(self.status.pending_events)  # the outbox, this tick's and any a crash left
        self.status = self.status.model_copy(update={"pending_events": []})
        self.now += datetime.timedelta(seconds=advance)
        return decision

    def apply(self, action: rollouts.Action) -> None:
        match action:
            case rollouts.EnsurePrimary(template=template, revision=revision, replicas=wanted):
                # None: an autoscaler sizes the primary; it keeps the size it has.
                n = wanted if wanted is not None else (self.primary.replicas if self.primary else 1)
                if self.primary is None or self.primary.revision != revision or self.primary.replicas != n:
                    self.primary_updates += 1
                    self.primary_template = dict(template)
                    self.primary = observations.Workload(revision, n, n, n, 1, 1)
            case rollouts.EnsureCanary(revision=revision):
                self.canary = observations.Workload(
                    revision, self.canary_replicas, self.canary_replicas, self.canary_replicas
                )
            case rollouts.SetWeight(weight=weight, primary_replicas=n):
                self.canary_replicas = replicas_router.canary_replicas(weight, n)
                if self.canary is not None:
                    c = self.canary_replicas
                    self.canary = dataclasses.replace(self.canary, replicas=c, ready_replicas=c, updated_replicas=c)
            case rollouts.ScaleTarget(replicas=n):
                self.target_replicas = n
            case rollouts.ClearRequest(annotation=key, value=value):
                if self.annotations.get(key) == value:
                    del self.annotations[key]

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def run_checks(self, verdict: models.Verdict, until: models.Phase | None = None, limit: int = 60) -> None:
        """Tick every second, handing in a check whenever one is due, until a phase (or ``limit`` ticks)."""
        for _ in range(limit):
            due = rollouts.needs(self.spec, self.status, self.revision(self.template), self.now).check
            self.tick(record(verdict, at=self.now) if due else None)
            if until is not None and self.status.phase is until:
                return


def deployment(name: str = "web", replicas: int = 2, image: str = "example/web:1.0") -> dict[str, Any]:
    """A Deployment manifest in namespace shop: an app container (port, env) and a sidecar."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "ports": [{"containerPort": 8080}],
                            "env": [{"name": "MODE", "value": "stable"}],
                        },
                        {"name": "sidecar", "image": "example/sidecar:1.0"},
                    ]
                },
            },
        },
    }


def assert_not_taken_over(target: Mapping[str, Any] | None, replicas: int) -> None:
    """The user's Deployment as they left it: there, at its size, with no claim or label of the operator on it.

    What "nothing taken over" means to its owner: no ``web-primary`` alone would not show a target scaled down
    or claimed (``canary.dev/claimed-by``) by a tick that stopped before creating the arms.
    """
    assert target is not None, "the target Deployment is gone"
    meta = target.get("metadata") or {}
    assert target["spec"]["replicas"] == replicas, f"the target was scaled to {target['spec']['replicas']}"
    assert ownership.CLAIM_ANNOTATION not in (meta.get("annotations") or {}), "the target was claimed"
    marks = {
        key: value
        for key, value in {**(meta.get("annotations") or {}), **(meta.get("labels") or {})}.items()
        if key.startswith(f"{models.GROUP}/") or key in workloads.MANAGED_BY
    }
    assert marks == {}, f"the operator marked the target: {marks}"
