"""Shared builders for the unit tests (plain data, no I/O)."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import pathlib
from typing import Any

import yaml

from canary_operator import models, rollouts
from canary_operator.routing import replicas as replicas_router

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "web.yaml"


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
    """Plays the cluster for the pure state machine: applies each decision's actions to a few dataclasses
    (Deployments are ready at once, the router achieves the weight it is asked for) and feeds the next
    tick its observations. The clock is explicit."""

    spec: models.CanaryRolloutSpec
    template: dict[str, Any]
    target_replicas: int = 9
    now: datetime.datetime = T0
    status: models.CanaryRolloutStatus = dataclasses.field(default_factory=models.CanaryRolloutStatus)
    primary: rollouts.Workload | None = None
    primary_template: dict[str, Any] | None = None
    canary: rollouts.Workload | None = None
    canary_replicas: int = 0
    promote_requested: bool = False
    budget_remaining: float | None = None
    budget_problem: str = ""
    force_release: bool = False
    primary_updates: int = 0
    events: list[rollouts.Event] = dataclasses.field(default_factory=list)

    def revision(self, template: dict[str, Any]) -> str:
        return f"rev-{template['spec']['containers'][0]['image'].rsplit(':', 1)[1]}"

    def observe(self, check: models.CheckRecord | None) -> rollouts.Observations:
        ready_canary = self.canary.ready_replicas if self.canary else 0
        ready_primary = self.primary.ready_replicas if self.primary else 0
        total = ready_canary + ready_primary
        weight = round(100 * ready_canary / total) if total else 0
        wanted = replicas_router.canary_replicas(
            rollouts.desired_weight(self.spec, self.status), self.status.target_replicas or 1
        )
        return rollouts.Observations(
            generation=1,
            target=rollouts.Target(self.revision(self.template), self.template, self.target_replicas),
            primary=self.primary,
            canary=self.canary,
            weight=weight,
            traffic_settled=self.canary is not None and self.canary_replicas == wanted,
            check=check,
            promote_requested=self.promote_requested,
            budget_remaining=self.budget_remaining,
            budget_problem=self.budget_problem,
            force_release=self.force_release,
        )

    def tick(self, check: models.CheckRecord | None = None, advance: float = 1.0) -> rollouts.Decision:
        decision = rollouts.reconcile(self.spec, self.status, self.observe(check), self.now)
        for action in decision.actions:
            self.apply(action)
        self.events.extend(decision.events)
        self.status = decision.status
        self.now += datetime.timedelta(seconds=advance)
        return decision

    def apply(self, action: rollouts.Action) -> None:
        match action:
            case rollouts.EnsurePrimary(template=template, revision=revision, replicas=n):
                if self.primary is None or self.primary.revision != revision or self.primary.replicas != n:
                    self.primary_updates += 1
                    self.primary_template = dict(template)
                    self.primary = rollouts.Workload(revision, n, n, n, 1, 1)
            case rollouts.EnsureCanary(revision=revision):
                self.canary = rollouts.Workload(
                    revision, self.canary_replicas, self.canary_replicas, self.canary_replicas
                )
            case rollouts.SetWeight(weight=weight, primary_replicas=n):
                self.canary_replicas = replicas_router.canary_replicas(weight, n)
                if self.canary is not None:
                    c = self.canary_replicas
                    self.canary = dataclasses.replace(self.canary, replicas=c, ready_replicas=c, updated_replicas=c)
            case rollouts.ScaleTarget(replicas=n):
                self.target_replicas = n
            case rollouts.ForgetAnnotation(key=rollouts.PROMOTE_ANNOTATION):
                self.promote_requested = False
            case rollouts.ForgetAnnotation(key=rollouts.FORCE_ANNOTATION):
                self.force_release = False

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def run_checks(self, verdict: models.Verdict, until: models.Phase | None = None, limit: int = 60) -> None:
        """Tick every second, handing in a check whenever one is due, until a phase (or ``limit`` ticks)."""
        for _ in range(limit):
            check = record(verdict, at=self.now) if rollouts.check_due(self.spec, self.status, self.now) else None
            self.tick(check)
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
