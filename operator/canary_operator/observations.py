"""What the operator observed of the cluster this tick, as plain data.

Shared by the state machine (which decides on it), the workloads module (which reads it from
Deployments) and the traffic routers (which report through it); it imports nothing of theirs, so
routers never depend on the state machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from canary_operator import models


@dataclasses.dataclass(frozen=True)
class Workload:
    """What the cluster says about a Deployment the operator owns."""

    revision: str | None
    replicas: int
    ready_replicas: int = 0
    updated_replicas: int = 0
    generation: int = 1
    observed_generation: int = 0

    @property
    def rolled_out(self) -> bool:
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas >= self.replicas
            and self.ready_replicas >= self.replicas
        )


@dataclasses.dataclass(frozen=True)
class Target:
    """The user's Deployment: its pod template, the template's hash, its replicas."""

    revision: str
    template: Mapping[str, Any]
    replicas: int


@dataclasses.dataclass(frozen=True)
class Traffic:
    weight: int  # percent of requests the canary actually gets
    settled: bool  # the router reached the weight it was last asked for


@dataclasses.dataclass(frozen=True)
class Request:
    """A request annotation present on the CanaryRollout (``canary.dev/promote: "true"``)."""

    kind: models.Request
    value: str


@dataclasses.dataclass(frozen=True)
class Observations:
    """Everything the state machine may use this tick besides the spec, the status and the clock."""

    generation: int
    target: Target | None
    primary: Workload | None = None
    canary: Workload | None = None
    traffic: Traffic = Traffic(0, False)
    check: models.CheckRecord | None = None  # present when a check was due and taken
    evidence: models.EvidenceRecord | None = None  # the continuous test between checks, when it was due
    requests: tuple[Request, ...] = ()
    # With an SLO, before a canary starts: the share of the error budget left (None: unknown, see budget_problem).
    budget_remaining: float | None = None
    budget_problem: str = ""
    gates: tuple[models.GateRecord, ...] = ()  # the gate webhooks' answers, when asked this tick
    # With spec.autoscalerRef: None when the user's HPA is carried over to the primary, else why it cannot be.
    autoscaler_problem: tuple[models.Reason, str] | None = None
    # With spec.autoscalerRef, once the primary exists: its replicas as its HPA set them. They rule over the
    # operator's planned count (the primary is created at the planned size; from then on the HPA sizes it).
    hpa_replicas: int | None = None
    # The digest of the Services as the spec wants them (``workloads.services_digest``); None: not compared.
    services_digest: str | None = None

    def request(self, kind: models.Request) -> Request | None:
        return next((r for r in self.requests if r.kind is kind), None)
