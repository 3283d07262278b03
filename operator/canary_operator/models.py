"""The CanaryRollout resource: its spec and status, and nothing else.

These pydantic models are the single source of truth for the API: the CRD's
``openAPIV3Schema`` is generated from them (``crds.py``), the operator parses
what it reads from the cluster with them, and the state machine works on them.
Field names follow Kubernetes conventions (camelCase on the wire), attributes
are snake_case in Python.
"""

from __future__ import annotations

import enum
import re
import urllib.parse
from typing import Annotated, Any, Literal

import pydantic
from pydantic import alias_generators

GROUP = "canary.dev"
VERSION = "v1alpha1"
KIND = "CanaryRollout"
PLURAL = "canaryrollouts"
API_VERSION = f"{GROUP}/{VERSION}"

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

Duration = Annotated[
    str,
    pydantic.StringConstraints(pattern=DURATION_PATTERN),
    pydantic.Field(description="A duration such as 30s, 1m30s, 500ms or 30d."),
]
QUERY_VARIABLES = frozenset({"namespace", "workload", "pod", "interval", "target", "primary", "canary"})
QUERY_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

Weight = Annotated[int, pydantic.Field(ge=0, le=100)]


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration string (``1m30s``); ValueError when malformed."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 1m30s, 500ms)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
    )


# ---------------------------------------------------------------- spec


class ScaleDown(enum.StrEnum):
    """When the user's Deployment gives its pods up to the primary (as Argo Rollouts' workloadRef.scaleDown)."""

    NEVER = "never"  # keep its pods running (they serve nothing through the operator's Services)
    ON_SUCCESS = "onsuccess"  # scale it to 0 once the primary is ready
    PROGRESSIVELY = "progressively"  # take replicas off it as the primary's become ready


class TargetRef(_Model):
    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["Deployment"] = "Deployment"
    name: str = pydantic.Field(min_length=1, max_length=240, description="The Deployment to release.")
    scale_down: ScaleDown = pydantic.Field(
        default=ScaleDown.ON_SUCCESS,
        description=(
            "When the Deployment is scaled down after the takeover: never, onsuccess (once the primary is ready)"
            " or progressively (as the primary's replicas become ready)."
        ),
    )


class AutoscalerRef(_Model):
    api_version: Literal["autoscaling/v2"] = "autoscaling/v2"
    kind: Literal["HorizontalPodAutoscaler"] = "HorizontalPodAutoscaler"
    name: str = pydantic.Field(
        min_length=1,
        max_length=240,
        description=(
            "The HPA of the target Deployment. The primary gets an equivalent HPA (<target>-primary);"
            " the canary is sized from the primary's actual replicas."
        ),
    )


class ServiceSpec(_Model):
    port: int = pydantic.Field(ge=1, le=65535, description="Port of the Services the operator creates.")
    target_port: int | None = pydantic.Field(
        default=None, ge=1, le=65535, description="Container port; defaults to port."
    )


class ReplicasRouting(_Model):
    """Weight approximated by the ratio of canary to primary ready replicas."""


class TrafficRouting(_Model):
    replicas: ReplicasRouting | None = None

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> TrafficRouting:
        chosen = [name for name, value in self if value is not None]
        if len(chosen) != 1:
            raise ValueError(f"trafficRouting needs exactly one router, got {chosen or 'none'}")
        return self

    @property
    def kind(self) -> str:
        return next(name for name, value in self if value is not None)


class Pause(_Model):
    duration: Duration | None = pydantic.Field(
        default=None, description="How long to hold; without it, wait for the canary.dev/promote annotation."
    )

    @property
    def seconds(self) -> float | None:
        return None if self.duration is None else parse_duration(self.duration)


class Step(_Model):
    set_weight: Weight | None = pydantic.Field(default=None, description="Share of traffic to the canary.")
    pause: Pause | None = None

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> Step:
        if (self.set_weight is None) == (self.pause is None):
            raise ValueError("a step is either setWeight or pause, not both and not neither")
        return self


class MetricTemplate(enum.StrEnum):
    ERROR_RATE = "error-rate"
    LATENCY_P99 = "latency-p99"
    REQUEST_RATE = "request-rate"


class Metric(_Model):
    name: str = pydantic.Field(min_length=1, max_length=63)
    template: MetricTemplate | None = pydantic.Field(
        default=None, description="Built-in query: error-rate (% 5xx), latency-p99 (ms), request-rate (req/s)."
    )
    query: str | None = pydantic.Field(
        default=None,
        description=(
            "PromQL run once per arm. Variables: {{ namespace }}, {{ workload }} (the arm's Deployment),"
            " {{ pod }} (regex of its pods), {{ interval }}, {{ target }}, {{ primary }}, {{ canary }}."
        ),
    )
    max: float | None = pydantic.Field(default=None, description="The canary fails above this value.")
    min: float | None = pydantic.Field(default=None, description="The canary fails below this value.")
    interval: Duration | None = pydantic.Field(
        default=None, description="Range of the query window; defaults to analysis.interval."
    )
    compare: Literal["primary"] | None = pydantic.Field(
        default=None,
        description=(
            "Judge the canary against the primary over the same window, with a statistical test on request"
            " counts (error-rate: share of 5xx; latency-p99: share of requests slower than slowerThan)."
        ),
    )
    max_increase: float | None = pydantic.Field(
        default=None, ge=0, description="compare: percentage points the canary may exceed the primary by."
    )
    max_ratio: float | None = pydantic.Field(
        default=None, ge=1, description="compare: factor the canary may exceed the primary by (e.g. 1.5)."
    )
    confidence: float = pydantic.Field(
        default=0.99,
        ge=0.5,
        le=0.99999,
        description="compare: confidence needed to fail (or pass) a check; 1 - confidence is the false-rollback rate.",
    )
    slower_than: float | None = pydantic.Field(
        default=None,
        gt=0,
        description=(
            "compare on latency-p99: the bound (ms) a slow request exceeds. Without it, the primary's own p99"
            " over the same window (the bucket bound at or above it): the canary fails when more of its requests"
            " are slower than that than the tolerance allows, e.g. maxRatio: 2."
        ),
    )

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> Metric:
        if (self.template is None) == (self.query is None):
            raise ValueError(f"metric {self.name!r}: give exactly one of template or query")
        unknown = sorted({v for v in QUERY_VARIABLE.findall(self.query or "") if v not in QUERY_VARIABLES})
        if unknown:
            raise ValueError(
                f"metric {self.name!r}: unknown query variable(s) {', '.join(unknown)};"
                f" known: {', '.join(sorted(QUERY_VARIABLES))}"
            )
        if self.max is None and self.min is None and self.compare is None:
            raise ValueError(f"metric {self.name!r}: give max, min, compare: primary, or a combination")
        if self.compare is not None:
            if self.template not in (MetricTemplate.ERROR_RATE, MetricTemplate.LATENCY_P99):
                raise ValueError(
                    f"metric {self.name!r}: compare needs request counts; use template error-rate or latency-p99"
                )
            if not (self.max_increase or (self.max_ratio or 1) > 1):
                raise ValueError(
                    f"metric {self.name!r}: compare needs a tolerance: maxIncrease > 0 (percentage points)"
                    " or maxRatio > 1"
                )
            if self.template is MetricTemplate.LATENCY_P99 and self.slower_than is None and not self.max_increase:
                raise ValueError(
                    f"metric {self.name!r}: compare on latency against the primary's p99 (no slowerThan) needs"
                    " maxIncrease > 0: the primary may have no request beyond its p99's bucket, and a ratio of"
                    " nothing allows nothing"
                )
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"metric {self.name!r}: min {self.min} is above max {self.max}")
        return self


PROMETHEUS_ADDRESS_PATTERN = r"^https?://[^/?#@%\\\s]+(/[^?#@%\\\s]*)?$"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]{0,1024}$")
# Set by the operator from the address and the credentials; a header of the same name would fight them.
_RESERVED_HEADERS = frozenset({"host", "authorization", "content-length", "transfer-encoding", "connection", "accept"})


def check_prometheus_address(text: str) -> str:
    """A Prometheus base URL, without its trailing slash; ValueError otherwise.

    The message never quotes the text: it may hold a password.
    """
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"\s", text):
        raise ValueError("must be an http:// or https:// URL with a host, e.g. http://prometheus.monitoring:9090")
    if "@" in parts.netloc:
        raise ValueError(
            "must not hold credentials (user:password@): anyone who can read the object would see them;"
            " put them in a Secret and reference it with secretRef"
        )
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError("must be a base URL, without ?query or #fragment")
    # The allow-list compares paths as written: nothing may resolve to another path later.
    if "%" in text or "\\" in text or any(part in (".", "..") for part in parts.path.split("/")):
        raise ValueError("must be a plain path, without percent-escapes, backslashes or . and .. segments")
    try:
        parts.port  # noqa: B018  (parsing it is the check)
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not parts.hostname:
        raise ValueError("must name a host")
    return text.rstrip("/")


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    """Extra HTTP headers (e.g. X-Scope-OrgID for Mimir or Thanos tenants); ValueError naming the bad one."""
    if len(headers) > 16:
        raise ValueError(f"at most 16 headers, got {len(headers)}")
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"header name {name[:64]!r} is not an HTTP token")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by the operator (credentials go in secretRef)")
        if not _HEADER_VALUE.match(value):
            raise ValueError(f"header {name!r}: the value must be printable ASCII, at most 1024 characters")
    return headers


class SecretReference(_Model):
    name: str = pydantic.Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        description="A Secret in the CanaryRollout's namespace.",
    )


class PrometheusSpec(_Model):
    """How to reach Prometheus; every field may be left to the operator's defaults (chart value prometheus)."""

    address: (
        Annotated[
            str,
            pydantic.AfterValidator(check_prometheus_address),
            pydantic.Field(max_length=2048, json_schema_extra={"pattern": PROMETHEUS_ADDRESS_PATTERN}),
        ]
        | None
    ) = pydantic.Field(
        default=None,
        description=(
            "Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090, or a Thanos/Mimir"
            " prefix. Defaults to the operator's address; the operator may allow only some addresses."
        ),
    )
    timeout: Duration | None = pydantic.Field(
        default=None,
        description=(
            "How long one check may wait for Prometheus, all its queries together. Defaults to the"
            " operator's timeout (10s); capped by the operator's maximum (30s)."
        ),
    )
    secret_ref: SecretReference | None = pydantic.Field(
        default=None,
        description=(
            "A Secret in this namespace with key token (bearer token) or keys username and password"
            " (basic auth), and optionally ca.crt (PEM) to verify the server with."
        ),
    )
    insecure_skip_verify: bool | None = pydantic.Field(
        default=None, description="Do not verify the server's TLS certificate (test setups only)."
    )
    headers: dict[str, str] = pydantic.Field(
        default={},
        max_length=16,
        description="Extra HTTP headers, e.g. X-Scope-OrgID: team-a for a Mimir, Cortex or Thanos tenant.",
    )

    @pydantic.field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) <= 0:
            raise ValueError("must be above 0s")
        return value

    @pydantic.field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)


class Analysis(_Model):
    interval: Duration = pydantic.Field(default="1m", description="Time between checks and query window.")
    failure_threshold: int = pydantic.Field(
        default=2, ge=1, description="Consecutive failed checks of a metric that roll back."
    )
    fail_fast: bool = pydantic.Field(
        default=True,
        description=(
            "A comparison that fails with p <= (1 - confidence) ** failureThreshold, as unlikely on a good canary"
            " as that many failures in a row, rolls back at once. false: always wait for failureThreshold"
            " failed checks, to ride out one-minute bursts at the price of slower rollbacks."
        ),
    )
    inconclusive_threshold: int = pydantic.Field(
        default=3, ge=1, description="Consecutive inconclusive checks that pause the rollout."
    )
    min_requests: int = pydantic.Field(
        default=50, ge=0, description="Fewer canary requests than this in the window: inconclusive."
    )
    max_step_extension: Duration | None = pydantic.Field(
        default=None,
        description=(
            "How long a step may run past its plan while checks lack traffic, before the rollout holds"
            " (InsufficientTraffic); without it, inconclusiveThreshold applies."
        ),
    )
    prometheus: PrometheusSpec = pydantic.Field(
        default=PrometheusSpec(), description="Where the metrics come from; omit it to use the operator's defaults."
    )
    metrics: list[Metric] = pydantic.Field(min_length=1)

    @pydantic.model_validator(mode="after")
    def _unique_names(self) -> Analysis:
        names = [m.name for m in self.metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"metric names must be unique, repeated: {', '.join(duplicates)}")
        return self

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)


class BurnRate(_Model):
    """Multi-window burn-rate alert on the canary's own traffic: both windows must burn faster than factor."""

    short: Duration = "5m"
    long: Duration = "1h"
    factor: float = pydantic.Field(default=14.4, gt=0, description="Burn rate (budget spent / budget) that fails.")


class SLO(_Model):
    objective: float = pydantic.Field(gt=0, lt=100, description="Percent of requests answered without 5xx, e.g. 99.9.")
    window: Duration = pydantic.Field(default="30d", description="The SLO window the error budget is counted over.")
    tighten_factor: float = pydantic.Field(
        default=0.5, gt=0, le=1, description="Limits are multiplied by this when 10-25% of the budget is left."
    )
    burn_rate: BurnRate = BurnRate()

    @property
    def budget(self) -> float:
        """The error ratio the objective allows (0.001 for 99.9)."""
        return 1 - self.objective / 100


class SecretKeyRef(_Model):
    name: str = pydantic.Field(min_length=1, max_length=253, description="A Secret in the CanaryRollout's namespace.")
    key: str = pydantic.Field(min_length=1, max_length=253)


class WebhookType(enum.StrEnum):
    """When a webhook is called, as Flagger's users know them."""

    PRE_ROLLOUT = "pre-rollout"  # gate: before any traffic moves to the canary
    ROLLOUT = "rollout"  # at every check, e.g. to drive a load test; a failure counts as a failed check
    CONFIRM_PROMOTION = "confirm-promotion"  # gate: after the last step, before the primary is updated
    POST_ROLLOUT = "post-rollout"  # after a promotion or a rollback; its answer changes nothing
    ROLLBACK = "rollback"  # while analysing: a 2xx answer rolls the canary back


class GateFailure(enum.StrEnum):
    WAIT = "wait"  # hold and ask again at the next tick (until the gate's deadline, if any)
    FAIL = "fail"  # roll back (or do not start) at once


class Webhook(_Model):
    name: str = pydantic.Field(min_length=1, max_length=63)
    type: WebhookType
    url: pydantic.AnyHttpUrl
    timeout: Duration = pydantic.Field(default="5s", description="Per attempt; at most 60s.")
    retries: int = pydantic.Field(
        default=2, ge=0, le=5, description="More attempts after a timeout, a connection error or a 5xx."
    )
    on_failure: GateFailure | None = pydantic.Field(
        default=None,
        description=(
            "Gates (pre-rollout, confirm-promotion): what a non-2xx answer or a timeout means. wait (the default)"
            " holds and asks again; fail rolls back."
        ),
    )
    headers_from: str | None = pydantic.Field(
        default=None,
        description="A Secret whose keys are sent as HTTP headers (e.g. Authorization), read at every call.",
    )
    metadata: dict[str, str] = pydantic.Field(default={}, description="Sent as is in the payload's metadata.")

    @pydantic.model_validator(mode="after")
    def _bounded(self) -> Webhook:
        if parse_duration(self.timeout) > 60:
            raise ValueError(f"webhook {self.name!r}: timeout {self.timeout} is above 60s")
        if self.on_failure is not None and self.type not in GATES:
            raise ValueError(f"webhook {self.name!r}: onFailure applies to gates (pre-rollout, confirm-promotion) only")
        return self

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout)

    @property
    def failure(self) -> GateFailure:
        return self.on_failure or GateFailure.WAIT


GATES = frozenset({WebhookType.PRE_ROLLOUT, WebhookType.CONFIRM_PROMOTION})


class NotificationEvent(enum.StrEnum):
    """The transitions a person is told about."""

    STARTED = "started"
    STEP_PASSED = "step-passed"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    HELD = "held"


class Notification(_Model):
    name: str = pydantic.Field(min_length=1, max_length=63)
    format: Literal["json", "slack"] = pydantic.Field(
        default="json", description="json: the generic payload; slack: an incoming-webhook message."
    )
    url: pydantic.AnyHttpUrl | None = None
    url_from: SecretKeyRef | None = pydantic.Field(
        default=None, description="Read the URL from a Secret (Slack webhook URLs are credentials)."
    )
    headers_from: str | None = pydantic.Field(default=None, description="A Secret whose keys are sent as headers.")
    events: list[NotificationEvent] = pydantic.Field(
        default=list(NotificationEvent), min_length=1, description="The transitions to send; all by default."
    )
    timeout: Duration = "5s"
    retries: int = pydantic.Field(default=2, ge=0, le=5)

    @pydantic.model_validator(mode="after")
    def _one_url(self) -> Notification:
        if (self.url is None) == (self.url_from is None):
            raise ValueError(f"notification {self.name!r}: give exactly one of url or urlFrom")
        if parse_duration(self.timeout) > 60:
            raise ValueError(f"notification {self.name!r}: timeout {self.timeout} is above 60s")
        return self

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout)


class CanaryRolloutSpec(_Model):
    target_ref: TargetRef
    autoscaler_ref: AutoscalerRef | None = None
    service: ServiceSpec
    traffic_routing: TrafficRouting
    steps: list[Step] = pydantic.Field(min_length=1)
    analysis: Analysis
    progress_deadline: Duration = pydantic.Field(
        default="10m",
        description=(
            "How long any wait may last without progress: canary pods becoming ready, the primary rolling out,"
            " checks staying inconclusive. A manual gate (pause without duration) and a pause by request are not"
            " bounded by it."
        ),
    )
    progress_deadline_abort: bool = pydantic.Field(
        default=True,
        description=(
            "When the deadline passes: true rolls the canary back (or the promotion back to the stable template);"
            " false holds with Stalled=True, reason ProgressDeadlineExceeded."
        ),
    )
    slo: SLO | None = pydantic.Field(
        default=None, description="Error budget gate before a canary starts, burn-rate trigger during it."
    )
    webhooks: list[Webhook] = pydantic.Field(default=[], description="Gates and hooks called during a release.")
    notifications: list[Notification] = pydantic.Field(
        default=[], description="Where to tell people about transitions (started, promoted, rolled back, ...)."
    )

    @pydantic.model_validator(mode="after")
    def _unique_hook_names(self) -> CanaryRolloutSpec:
        for kind, names in (
            ("webhook", [w.name for w in self.webhooks]),
            ("notification", [n.name for n in self.notifications]),
        ):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{kind} names must be unique, repeated: {', '.join(repeated)}")
        return self


# ---------------------------------------------------------------- status


class Phase(enum.StrEnum):
    INITIALIZING = "Initializing"  # taking over the target, primary not ready yet
    STABLE = "Stable"  # primary serves everything, no canary under way
    PROGRESSING = "Progressing"
    PAUSED = "Paused"  # held: checks inconclusive too often
    PROMOTING = "Promoting"  # primary rolling out the new revision
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"


IDLE_PHASES = frozenset({Phase.STABLE, Phase.SUCCEEDED, Phase.ROLLED_BACK})


class EventType(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class Reason(enum.StrEnum):
    """Why: the reason of an Event and of a kstatus condition, one vocabulary for both."""

    INITIALIZING = "Initializing"
    INITIALIZED = "Initialized"
    RESCALED = "Rescaled"
    CANARY_STARTED = "CanaryStarted"
    CANARY_SUPERSEDED = "CanarySuperseded"
    CANARY_ABANDONED = "CanaryAbandoned"
    STEP_ADVANCED = "StepAdvanced"
    STEPS_CHANGED = "StepsChanged"
    CHECK_FAILED = "CheckFailed"
    PAUSED = "Paused"
    RESUMED = "Resumed"
    PROMOTING = "Promoting"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    RETRIED = "Retried"
    REQUEST_IGNORED = "RequestIgnored"
    WEBHOOK_REFUSED = "WebhookRefused"
    PAUSED_BY_REQUEST = "PausedByRequest"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    TARGET_NOT_FOUND = "TargetNotFound"
    INVALID_SPEC = "InvalidSpec"
    OBJECT_CONFLICT = "ObjectConflict"
    RECONCILE_ERROR = "ReconcileError"
    ERROR_BUDGET_LOW = "ErrorBudgetLow"
    ERROR_BUDGET_EXHAUSTED = "ErrorBudgetExhausted"
    ERROR_BUDGET_UNKNOWN = "ErrorBudgetUnknown"
    # Why a check was inconclusive (the judge's causes), as condition reasons.
    INCONCLUSIVE = "Inconclusive"
    INSUFFICIENT_TRAFFIC = "InsufficientTraffic"
    NO_DATA = "NoData"
    PROMETHEUS_UNREACHABLE = "PrometheusUnreachable"
    QUERY_REJECTED = "QueryRejected"
    PROMETHEUS_BAD_RESPONSE = "PrometheusBadResponse"
    # Why a rollout's Prometheus cannot be used at all (``endpoints``); no request was sent.
    PROMETHEUS_NOT_ALLOWED = "PrometheusNotAllowed"
    PROMETHEUS_ADDRESS_MISSING = "PrometheusAddressMissing"
    PROMETHEUS_CREDENTIALS = "PrometheusCredentials"


class Outcome(enum.StrEnum):
    """How a release ended."""

    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"  # rolled back on request (canary.dev/abort)
    SUPERSEDED = "superseded"
    ABANDONED = "abandoned"


class BudgetBand(enum.StrEnum):
    HEALTHY = "healthy"
    CAUTION = "caution"
    WARNING = "warning"
    EXHAUSTED = "exhausted"
    UNKNOWN = "unknown"


class BudgetAction(enum.StrEnum):
    PROCEED = "proceed"
    PROCEED_WITH_WARNING = "proceed-with-warning"
    TIGHTEN = "tighten"
    BLOCKED = "blocked"
    FORCED = "forced"


class Hold(enum.StrEnum):
    """Why a rollout in phase Paused is held."""

    INCONCLUSIVE = "Inconclusive"  # checks could not conclude; resumes by itself
    REQUEST = "Request"  # canary.dev/pause; resumes on canary.dev/resume
    DEADLINE = "Deadline"  # progressDeadline passed with progressDeadlineAbort false


class Request(enum.StrEnum):
    """The one-shot requests a user (or kubectl canary) writes as annotations ``canary.dev/<request>``."""

    PROMOTE = "promote"  # value "true": pass the waiting manual gate; "full": skip the remaining steps
    ABORT = "abort"
    RETRY = "retry"
    PAUSE = "pause"
    RESUME = "resume"
    FORCE_RELEASE = "force-release"  # start a canary although the error budget is exhausted

    @property
    def annotation(self) -> str:
        return f"{GROUP}/{self.value}"


ANALYSING_PHASES = frozenset({Phase.PROGRESSING, Phase.PAUSED})


class Verdict(enum.StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


class _Status(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


def _whole(value: Any) -> Any:
    """Request counts come from Prometheus' extrapolated increase(); people read them as whole requests."""
    return round(value) if isinstance(value, float) else value


RequestCount = Annotated[int, pydantic.BeforeValidator(_whole)]


class MetricResult(_Status):
    name: str
    verdict: Verdict
    reason: str
    canary: float | None = None
    primary: float | None = None
    canary_requests: RequestCount | None = None
    primary_requests: RequestCount | None = None
    limit: str | None = None
    query: str | None = None
    statistic: str | None = pydantic.Field(default=None, description="The test behind a compare verdict.")
    p_value: float | None = pydantic.Field(default=None, description="P(data | canary within tolerance).")
    bound: str | None = pydantic.Field(default=None, description="Confidence interval of the excess over tolerance.")
    needed_requests: int | None = pydantic.Field(default=None, description="More canary requests to conclude.")


class CheckRecord(_Status):
    at: str
    release: str | None = None
    window: str | None = None
    verdict: Verdict
    reason: str
    cause: str | None = pydantic.Field(default=None, description="Why inconclusive, as a condition reason.")
    weight: int = 0
    metrics: list[MetricResult] = []


class ReleaseRecord(_Status):
    """One release, start to verdict: the delivery figures (DORA) as the operator sees them."""

    release_id: str
    revision: str
    outcome: Outcome
    started_at: str
    finished_at: str
    duration_seconds: float | None = None  # start to verdict; for a promotion, the lead time
    time_to_detect_seconds: float | None = None  # rolled back: start to the rollback verdict
    first_failure_at: str | None = None
    restored_at: str | None = None  # rolled back: traffic seen back at 100% primary
    time_to_restore_seconds: float | None = None  # rolled back: first failing check to restored
    reason: str = ""


class BudgetDecision(_Status):
    """What the error budget allowed when the current canary was (or was not) started."""

    at: str
    remaining: float | None = pydantic.Field(default=None, description="Share of the error budget left (0..1).")
    band: BudgetBand
    action: BudgetAction
    message: str = ""


class RequestRecord(_Status):
    """A request annotation the operator acted on (or ignored), and whether its annotation was seen removed."""

    request: Request
    value: str
    at: str
    outcome: str
    cleared: bool = False


class EventRecord(_Status):
    """An Event recorded with the transition it tells of, posted after the status is written (an outbox).

    Its name is derived from ``seq``, so posting it again after a crash is refused as already existing:
    every Event is posted once.
    """

    seq: int
    type: EventType
    reason: Reason
    message: str
    at: str


class Condition(_Status):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int | None = None


def _streaks_from_wire(value: Any) -> Any:
    if isinstance(value, list):
        return {item["metric"]: item["count"] for item in value if isinstance(item, dict)}
    return value  # a dict, as written before the list form


def _streaks_to_wire(streaks: dict[str, int]) -> list[dict[str, Any]]:
    return [{"metric": name, "count": count} for name, count in streaks.items()]


# Each metric's run of failed checks. In Python a dict by metric name; on the wire a list of
# {metric, count}, because `kubectl describe` turns map keys into title case ("Error - Rate").
FailureStreaks = Annotated[
    dict[str, int],
    pydantic.BeforeValidator(_streaks_from_wire),
    pydantic.PlainSerializer(_streaks_to_wire, return_type=list[dict[str, Any]], when_used="json"),
    pydantic.WithJsonSchema(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"metric": {"type": "string"}, "count": {"type": "integer"}},
                "required": ["metric", "count"],
            },
        }
    ),
]


class GateRecord(_Status):
    """The last answer of a gate webhook, for the current release."""

    name: str
    type: str
    revision: str | None = pydantic.Field(default=None, description="The revision the gate was asked about.")
    open: bool
    at: str
    since: str | None = pydantic.Field(default=None, description="When it was first asked about this revision.")
    attempts: int = 1
    code: int | None = pydantic.Field(default=None, description="HTTP status; none after a timeout or refusal.")
    message: str = ""


def step_label(phase: Phase | None, current_step_index: int | None, steps: int) -> str | None:
    """The step as people count it, "n/N" (1-based), for kubectl's STEP column; None when no canary is under way.

    ``currentStepIndex`` equals the number of steps once they are all done, so it is capped at N.
    """
    if phase not in ANALYSING_PHASES and phase is not Phase.PROMOTING:
        return None
    index = current_step_index or 0
    return f"{min(index + 1, steps)}/{steps}"


class CanaryRolloutStatus(_Status):
    # Not frozen: the state machine works on a copy of it (the draft of the next status), field by field.
    model_config = pydantic.ConfigDict(frozen=False)

    phase: Phase | None = None
    observed_generation: int | None = None
    message: str | None = None
    stable_revision: str | None = pydantic.Field(default=None, description="Pod template hash the primary runs.")
    stable_template: dict[str, Any] | None = pydantic.Field(
        default=None, description="The pod template of the stable revision: what a rollback puts back on the primary."
    )
    promoting_template: dict[str, Any] | None = pydantic.Field(
        default=None, description="While Promoting: the pod template the primary is rolling out."
    )
    canary_revision: str | None = pydantic.Field(default=None, description="Revision under (or last under) analysis.")
    rejected_revision: str | None = pydantic.Field(default=None, description="Rolled back; not retried.")
    release_id: str | None = None
    current_step_index: int | None = None
    step: str | None = pydantic.Field(default=None, description="The current step as n/N (see step_label).")
    step_started_at: str | None = None
    weight_settled_at: str | None = None
    canary_started_at: str | None = None
    weight: int = 0
    steps_digest: str | None = pydantic.Field(default=None, description="The steps the current canary follows.")
    last_progress_at: str | None = pydantic.Field(
        default=None,
        description="The last progress (transition, weight reached, passed check): where the deadline starts.",
    )
    hold: Hold | None = pydantic.Field(default=None, description="While Paused: why.")
    promote_full: bool = pydantic.Field(default=False, description="canary.dev/promote=full: skip the remaining steps.")
    failed_checks: FailureStreaks = pydantic.Field(
        default={}, description="Each metric's run of consecutive failed checks."
    )
    inconclusive_checks: int = 0
    last_check_at: str | None = None
    last_verdict: str | None = None
    last_check: CheckRecord | None = None
    recent_checks: list[CheckRecord] = pydantic.Field(default=[], description="The last few checks, newest last.")
    budget: BudgetDecision | None = None
    failing_since: str | None = pydantic.Field(default=None, description="The first failed check of the streak.")
    releases: list[ReleaseRecord] = pydantic.Field(default=[], description="The last few releases, newest last.")
    target_replicas: int | None = pydantic.Field(
        default=None, description="Replicas the target had when taken over; restored on deletion."
    )
    last_request: RequestRecord | None = pydantic.Field(default=None, description="The newest request acted on.")
    requests: list[RequestRecord] = pydantic.Field(
        default=[], description="The last request of each kind, until its annotation is seen removed."
    )
    event_seq: int = pydantic.Field(default=0, description="Events recorded so far; names the next one.")
    pending_events: list[EventRecord] = pydantic.Field(
        default=[], description="Events of the last transition not yet confirmed posted."
    )
    reconcile_errors: int = pydantic.Field(default=0, description="Ticks that failed in a row.")
    gates: list[GateRecord] = pydantic.Field(default=[], description="The gate webhooks' last answers.")
    conditions: list[Condition] = []

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def parse_spec(raw: Any) -> CanaryRolloutSpec:
    """Validate a spec as read from the cluster; pydantic.ValidationError when it is invalid."""
    return CanaryRolloutSpec.model_validate(raw)


def parse_status(raw: Any) -> CanaryRolloutStatus:
    return CanaryRolloutStatus.model_validate(raw or {})


def explain(error: pydantic.ValidationError) -> str:
    """One line per problem, with the field path as a user writes it in YAML."""
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"] if p not in ("function-after",)) or "spec"
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"spec.{path}: {message}")
    return "; ".join(lines)
