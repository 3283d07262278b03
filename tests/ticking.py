"""The operator's I/O edge driven one tick at a time against the emulated API (for tests/handlers).

A :class:`World` is one rollout's namespace in an emulated cluster, a ``kube.Client`` on it, a
fake metric provider (:class:`Metrics`), an explicit clock, and the record of every write the
operator sent, in order (its Events included: they are writes too).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping
from typing import Any

from helpers import T0

from canary_bench import cluster as clusters
from canary_bench import emulation
from canary_operator import kube, models, reconciling

RECORD = "patch canaryrollouts/web/status"  # the decision, or (last in a tick) the outbox cleared


@dataclasses.dataclass(frozen=True)
class Write:
    """One write as the API received it: what a reviewer would read in an audit log."""

    verb: str
    plural: str
    name: str | None
    subresource: str | None
    body: Any

    @property
    def what(self) -> str:
        """``patch deployments/web-canary``, ``patch canaryrollouts/web/status``, ``event RolledBack``."""
        if self.plural == "events" and self.verb == "create":
            return f"event {self.body.get('reason')}"
        path = "/".join(p for p in (self.plural, self.name, self.subresource) if p)
        return f"{self.verb} {path}"


def whats(writes: list[Write]) -> list[str]:
    return [w.what for w in writes]


class Metrics:
    """A metric provider with the numbers a test sets: requests per window and error percent per arm."""

    def __init__(self) -> None:
        self.requests = 1000.0
        self.error_percent = {"canary": 0.0, "primary": 0.0}
        self.queries: list[str] = []

    async def query(self, promql: str, at: datetime.datetime) -> float:
        self.queries.append(promql)
        arm = "canary" if "-canary" in promql else "primary"
        if promql.startswith("100 *"):  # the error-rate template: percent of 5xx
            return self.error_percent[arm]
        if '"5.."' in promql:  # a count of 5xx answers
            return self.requests * self.error_percent[arm] / 100
        return self.requests

    async def query_by(self, promql: str, at: datetime.datetime, label: str) -> dict[str, float]:
        self.queries.append(promql)
        return {}


class _Source:
    """Where ``reconciling`` gets its metric provider: always the test's :class:`Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def check(self, analysis: models.Analysis) -> None:
        pass

    async def provider(self, api: kube.Client, namespace: str, analysis: models.Analysis) -> Metrics:
        return self.metrics


def rollout_manifest(namespace: str, **analysis: Any) -> dict[str, Any]:
    """One step at 50%, checks every 10 s, one failed check rolls back; only the error rate is judged."""
    return {
        "apiVersion": "canary.dev/v1alpha1",
        "kind": "CanaryRollout",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "service": {"port": 80, "targetPort": 8080},
            "trafficRouting": {"replicas": {}},
            "steps": [{"setWeight": 50}],
            "analysis": {
                "interval": "10s",
                "failureThreshold": 1,
                "minRequests": 50,
                "prometheus": {"address": "http://prometheus.invalid:9090"},
                "metrics": [{"name": "error-rate", "template": "error-rate", "max": 1}],
                **analysis,
            },
        },
    }


def target_manifest(namespace: str, image: str = "example/web:1.0", replicas: int = 4) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 8080}]}]},
            },
        },
    }


@dataclasses.dataclass
class World:
    """One rollout's namespace, and the operator's I/O edge pointed at it, one tick at a time."""

    cluster: clusters.EmulatedCluster
    namespace: str
    api: kube.Client
    metrics: Metrics
    writes: list[Write] = dataclasses.field(default_factory=list)
    now: datetime.datetime = T0

    # ---------------------------------------------------------------- the user's side

    def path(self, plural: str, name: str | None = None) -> str:
        group = {"deployments": "/apis/apps/v1", "canaryrollouts": "/apis/canary.dev/v1alpha1"}.get(plural, "/api/v1")
        return f"{group}/namespaces/{self.namespace}/{plural}" + (f"/{name}" if name else "")

    def create_target(self, image: str = "example/web:1.0", replicas: int = 4) -> None:
        self.cluster.create(self.path("deployments"), target_manifest(self.namespace, image, replicas))
        self.settle()

    def create_rollout(self, **analysis: Any) -> None:
        self.cluster.create(self.path("canaryrollouts"), rollout_manifest(self.namespace, **analysis))

    def set_image(self, image: str) -> None:
        """What ``kubectl set image deployment/web web=IMAGE`` sends."""
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}
        self.cluster.patch(self.path("deployments", "web"), patch, kind="strategic")
        self.settle()

    def get(self, plural: str, name: str) -> dict[str, Any]:
        found = self.cluster.get(self.path(plural, name))
        assert found is not None, f"{plural}/{name} not found"
        return found

    def status(self) -> dict[str, Any]:
        return dict(self.get("canaryrollouts", "web").get("status") or {})

    def settle(self) -> None:
        """Wait until the Deployment controller has rolled out every Deployment of the namespace."""

        def done() -> bool:
            for item in self.cluster.list(self.path("deployments")):
                status = item.get("status") or {}
                wanted = item["spec"].get("replicas", 1)
                if status.get("observedGeneration") != item["metadata"]["generation"]:
                    return False
                if status.get("readyReplicas", 0) != wanted or status.get("updatedReplicas", 0) != wanted:
                    return False
            return True

        self.cluster.wait_for(done, timeout=10, interval=0.002, message="the Deployments to be rolled out")

    # ---------------------------------------------------------------- the operator's side

    async def tick(self, advance: float = 1.0) -> list[Write]:
        """One ``reconciling.tick`` at the current time; the writes it sent. The clock then moves on."""
        start = len(self.writes)
        await reconciling.tick(self.api, self.namespace, "web", self.now, _Source(self.metrics))
        self.now += datetime.timedelta(seconds=advance)
        self.settle()
        return self.writes[start:]

    async def finalize(self) -> list[Write]:
        start = len(self.writes)
        await reconciling.finalize(self.api, self.get("canaryrollouts", "web"))
        self.settle()
        return self.writes[start:]

    def on_status_write(self, effect: emulation.Effect, when: Callable[[emulation.Request], bool]) -> emulation.Fault:
        """Meet the rollout's first status write that ``when`` selects with ``effect`` (a 409, a lost write)."""
        return self.cluster.inject(
            emulation.Fault(
                "patch", "canaryrollouts", effect, subresource="status", namespace=self.namespace, when=when
            )
        )

    def posted(self) -> list[tuple[str, str]]:
        """The (type, reason) of the Events about the rollout, as ``kubectl describe`` lists them."""
        events = [
            e for e in self.cluster.list(self.path("events")) if (e.get("involvedObject") or {}).get("name") == "web"
        ]
        events.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
        return [(e["type"], e["reason"]) for e in events]

    async def until_stable(self) -> None:
        """Take the target over: ticks until the rollout is Stable (a few)."""
        for _ in range(5):
            await self.tick()
            if self.status().get("phase") == models.Phase.STABLE:
                return
        raise AssertionError(f"not Stable after 5 ticks: {self.status()}")


def image_of(world: World, name: str) -> str:
    """The image a Deployment of the world runs (its first container's)."""
    return str(world.get("deployments", name)["spec"]["template"]["spec"]["containers"][0]["image"])


def stalled_condition(status: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``Stalled`` condition of a rollout's status (recorded or as written by a tick)."""
    found: list[Mapping[str, Any]] = [c for c in status.get("conditions") or [] if c["type"] == "Stalled"]
    assert found, f"no Stalled condition in {status}"
    return found[0]


def stalled(world: World) -> tuple[str, str]:
    """The (status, reason) of the rollout's ``Stalled`` condition, as ``kubectl describe`` shows it."""
    found = stalled_condition(world.status())
    return found["status"], found["reason"]
