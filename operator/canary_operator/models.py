"""The CanaryRollout resource: its spec and status, and nothing else.

These pydantic models are the single source of truth for the API: the CRD's
``openAPIV3Schema`` is generated from them (``crds.py``), the operator parses
what it reads from the cluster with them, and the state machine works on them.
Field names follow Kubernetes conventions (camelCase on the wire), attributes
are snake_case in Python.
"""

from __future__ import annotations

import dataclasses
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

# At most four parts of at most five digits each: the schema alone keeps every duration far below
# what datetime and timedelta can hold (``9999999999w`` is refused before the operator sees it);
# each field's own bounds (``_within``) are checked by the model.
DURATION_PATTERN = r"^([0-9]{1,5}(\.[0-9]{1,3})?(ms|s|m|h|d|w)){1,4}$"
DURATION_MAX_LENGTH = 32
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
MAX_DURATION_SECONDS = 366 * 86400.0  # no window, pause or interval of a release needs more than a year

# Names that become object names, label values or URL path segments. A Service name is a DNS-1035
# label (a letter first, at most 63 characters), and the target's name is also the stem of
# ``<target>-primary`` and ``<target>-canary``: 63 - len("-primary") leaves 55.
DNS_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL_MAX_LENGTH = 63
TARGET_NAME_MAX_LENGTH = DNS_LABEL_MAX_LENGTH - len("-primary")
# A rollout's name is the value of the canary.dev/rollout label (at most 63 characters).
ROLLOUT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Metric names are label values of the operator's own metrics and keys of status.failedChecks.
METRIC_NAME_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"

Duration = Annotated[
    str,
    pydantic.StringConstraints(pattern=DURATION_PATTERN, max_length=DURATION_MAX_LENGTH),
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


def _within(low: float, high: float = MAX_DURATION_SECONDS, *, positive: bool = False) -> pydantic.AfterValidator:
    """A duration's bounds, checked by the model (a string pattern cannot say "at most 366d")."""

    def check(text: str | None) -> str | None:
        if text is None:
            return None
        seconds = parse_duration(text)
        if positive and seconds <= 0:
            raise ValueError(f"{text} must be longer than zero")
        if seconds < low:
            raise ValueError(f"{text} is shorter than the minimum of {_display(low)}")
        if seconds > high:
            raise ValueError(f"{text} is longer than the maximum of {_display(high)}")
        return text

    return pydantic.AfterValidator(check)


def _display(seconds: float) -> str:
    for unit in ("d", "h", "m", "s"):
        if seconds >= _UNIT_SECONDS[unit] and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds / _UNIT_SECONDS[unit]:g}{unit}"
    return f"{seconds * 1000:g}ms"


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,  # YAML spells them .inf and .nan; no limit or factor means anything with them
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
    name: str = pydantic.Field(
        min_length=1,
        max_length=TARGET_NAME_MAX_LENGTH,
        pattern=DNS_LABEL_PATTERN,
        description=(
            "The Deployment to release, in the rollout's namespace. A DNS label of at most 55 characters:"
            " <name>-primary and <name>-canary must fit 63."
        ),
    )
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


class GatewayAPIRouting(_Model):
    """Weights on the backendRefs of one rule of a Gateway API HTTPRoute (gateway.networking.k8s.io/v1)."""

    http_route: str = pydantic.Field(
        min_length=1, max_length=253, alias="httpRoute", description="The HTTPRoute, in the rollout's namespace."
    )
    rule: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=63,
        description="The rule's name; without it, the one rule whose backendRefs send to the apex Service.",
    )


class DestinationRuleRef(_Model):
    name: str = pydantic.Field(min_length=1, max_length=253, description="The DestinationRule of the apex host.")
    primary_subset: str = pydantic.Field(default="primary", min_length=1, description="Subset of the primary's pods.")
    canary_subset: str = pydantic.Field(default="canary", min_length=1, description="Subset of the canary's pods.")


class IstioRouting(_Model):
    """Weights on one HTTP route of an Istio VirtualService (networking.istio.io/v1)."""

    virtual_service: str = pydantic.Field(
        min_length=1, max_length=253, description="The VirtualService, in the rollout's namespace."
    )
    route: str | None = pydantic.Field(
        default=None,
        min_length=1,
        description="The http route's name; without it, the one route whose destinations are the apex host.",
    )
    destination_rule: DestinationRuleRef | None = pydantic.Field(
        default=None,
        description=(
            "Subset form: destinations are the apex host with the subsets of this DestinationRule;"
            " without it, the hosts <target>-primary and <target>-canary."
        ),
    )


class NginxRouting(_Model):
    """A canary Ingress cloned from the user's Ingress, for the NGINX Ingress Controller's canary annotations."""

    ingress: str = pydantic.Field(
        min_length=1, max_length=240, description="The Ingress that sends to the apex Service."
    )


@dataclasses.dataclass(frozen=True)
class RouteCapabilities:
    """What a router can do besides weights, checked when the spec is read, not when a step is reached."""

    header: frozenset[str] = frozenset()  # header match types: exact, prefix, regex
    max_headers: int = 0
    cookie: bool = False
    cookie_values: bool = False  # any value; False: only the value "always" routes to the canary


ROUTE_CAPABILITIES: dict[str, RouteCapabilities] = {
    "replicas": RouteCapabilities(),
    "gatewayAPI": RouteCapabilities(header=frozenset({"exact", "regex"}), max_headers=16),
    "istio": RouteCapabilities(
        header=frozenset({"exact", "prefix", "regex"}), max_headers=16, cookie=True, cookie_values=True
    ),
    "nginx": RouteCapabilities(header=frozenset({"exact", "regex"}), max_headers=1, cookie=True),
}


class TrafficRouting(_Model):
    replicas: ReplicasRouting | None = None
    gateway_api: GatewayAPIRouting | None = pydantic.Field(default=None, alias="gatewayAPI")
    istio: IstioRouting | None = None
    nginx: NginxRouting | None = None
    metrics: Literal["app", "dataPlane"] = pydantic.Field(
        default="app",
        description=(
            "Where the built-in metric templates read requests, errors and latency: the app's own"
            " http_requests_total and http_request_duration_seconds, or the router's data plane (Istio's"
            " istio_requests_total, the NGINX Ingress Controller's, Envoy's for gatewayAPI)."
        ),
    )

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> TrafficRouting:
        chosen = [
            type(self).model_fields[name].alias or name
            for name, value in self
            if value is not None and name != "metrics"
        ]
        if len(chosen) != 1:
            raise ValueError(f"trafficRouting needs exactly one router, got {chosen or 'none'}")
        if self.metrics == "dataPlane" and self.replicas is not None:
            raise ValueError("trafficRouting.metrics: the replicas router has no data plane to read; use app")
        return self

    @property
    def kind(self) -> str:
        """The router's name as the user writes it: replicas, gatewayAPI, istio or nginx."""
        return next(
            type(self).model_fields[name].alias or name
            for name, value in self
            if value is not None and name != "metrics"
        )

    @property
    def capabilities(self) -> RouteCapabilities:
        return ROUTE_CAPABILITIES[self.kind]


class Pause(_Model):
    duration: Annotated[Duration, _within(0)] | None = pydantic.Field(
        default=None, description="How long to hold; without it, wait for the canary.dev/promote annotation."
    )

    @property
    def seconds(self) -> float | None:
        return None if self.duration is None else parse_duration(self.duration)


class StringMatch(_Model):
    """One way to match a string; exactly one of exact, prefix, regex (Argo Rollouts' headerValue)."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> StringMatch:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) != 1:
            raise ValueError("a value match needs exactly one of exact, prefix, regex")
        return self

    @property
    def kind(self) -> str:
        return "exact" if self.exact is not None else "prefix" if self.prefix is not None else "regex"

    @property
    def value(self) -> str:
        return next(v for v in (self.exact, self.prefix, self.regex) if v is not None)


class HeaderMatch(_Model):
    header_name: str = pydantic.Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    header_value: StringMatch


class HeaderRoute(_Model):
    """Requests carrying all these headers go to the canary; an empty match removes the route."""

    name: str = pydantic.Field(default="canary-header", min_length=1, max_length=63)
    match: list[HeaderMatch] = pydantic.Field(default=[], description="All must match; empty: remove the route.")


class CookieRoute(_Model):
    """Requests carrying this cookie go to the canary; without cookieName, the route is removed."""

    name: str = pydantic.Field(default="canary-cookie", min_length=1, max_length=63)
    cookie_name: str | None = pydantic.Field(default=None, min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.-]+$")
    value: str = pydantic.Field(
        default="always", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="The cookie's value that matches."
    )


RouteMatch = HeaderRoute | CookieRoute


class Step(_Model):
    set_weight: Weight | None = pydantic.Field(default=None, description="Share of traffic to the canary.")
    pause: Pause | None = None
    set_header_route: HeaderRoute | None = pydantic.Field(
        default=None, description="Send requests with these headers to the canary, before or alongside weights."
    )
    set_cookie_route: CookieRoute | None = pydantic.Field(
        default=None, description="Send requests with this cookie to the canary, before or alongside weights."
    )

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> Step:
        if sum(value is not None for _, value in self) != 1:
            raise ValueError("a step is exactly one of setWeight, pause, setHeaderRoute, setCookieRoute")
        return self

    @property
    def route(self) -> RouteMatch | None:
        return self.set_header_route or self.set_cookie_route


def step_route(steps: list[Step], index: int) -> RouteMatch | None:
    """The header or cookie route in force at step ``index``: the last one set at or before it (None if cleared)."""
    for step in reversed(steps[: index + 1]):
        route = step.route
        if isinstance(route, HeaderRoute):
            return route if route.match else None
        if isinstance(route, CookieRoute):
            return route if route.cookie_name else None
    return None


def route_problems(kind: str, steps: list[Step]) -> list[str]:
    """Why the router ``kind`` cannot run these header and cookie steps (empty when it can)."""
    can = ROUTE_CAPABILITIES[kind]
    problems = []
    for number, step in enumerate(steps, 1):
        if step.set_header_route is not None and step.set_header_route.match:
            route = step.set_header_route
            if not can.header:
                problems.append(f"steps[{number - 1}].setHeaderRoute: the {kind} router cannot route by header")
                continue
            if len(route.match) > can.max_headers:
                problems.append(
                    f"steps[{number - 1}].setHeaderRoute: the {kind} router matches at most {can.max_headers}"
                    f" header(s), got {len(route.match)}"
                )
            for item in route.match:
                if item.header_value.kind not in can.header:
                    problems.append(
                        f"steps[{number - 1}].setHeaderRoute: the {kind} router cannot match a header by"
                        f" {item.header_value.kind} (it can: {', '.join(sorted(can.header))})"
                    )
        if step.set_cookie_route is not None and step.set_cookie_route.cookie_name:
            cookie = step.set_cookie_route
            if not can.cookie:
                problems.append(f"steps[{number - 1}].setCookieRoute: the {kind} router cannot route by cookie")
            elif not can.cookie_values and cookie.value != "always":
                problems.append(
                    f"steps[{number - 1}].setCookieRoute: the {kind} router sends a cookie to the canary only when"
                    f' its value is "always", got {cookie.value!r}'
                )
    return problems


class MetricTemplate(enum.StrEnum):
    ERROR_RATE = "error-rate"
    LATENCY_P99 = "latency-p99"
    REQUEST_RATE = "request-rate"


class Metric(_Model):
    name: str = pydantic.Field(min_length=1, max_length=63, pattern=METRIC_NAME_PATTERN)
    template: MetricTemplate | None = pydantic.Field(
        default=None, description="Built-in query: error-rate (% 5xx), latency-p99 (ms), request-rate (req/s)."
    )
    query: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=4096,
        description=(
            "PromQL run once per arm. Variables: {{ namespace }}, {{ workload }} (the arm's Deployment),"
            " {{ pod }} (regex of its pods), {{ interval }}, {{ target }}, {{ primary }}, {{ canary }}."
        ),
    )
    max: float | None = pydantic.Field(default=None, description="The canary fails above this value.")
    min: float | None = pydantic.Field(default=None, description="The canary fails below this value.")
    interval: Annotated[Duration, _within(1)] | None = pydantic.Field(
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
        default=None, ge=0, le=100, description="compare: percentage points the canary may exceed the primary by."
    )
    max_ratio: float | None = pydantic.Field(
        default=None, ge=1, le=1000, description="compare: factor the canary may exceed the primary by (e.g. 1.5)."
    )
    confidence: float = pydantic.Field(
        default=0.99,
        ge=0.5,
        le=0.99999,
        description=(
            "Confidence needed to fail (or pass) a check, on a comparison and on a max/min of error-rate or"
            " latency-p99 (tested on request counts); 1 - confidence is the false-rollback rate."
        ),
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
    interval: Annotated[Duration, _within(1, 86400)] = pydantic.Field(
        default="1m", description="Time between checks and query window, from 1s to 24h."
    )
    failure_threshold: int = pydantic.Field(
        default=2, ge=1, le=100, description="Consecutive failed checks of a metric that roll back."
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
        default=3, ge=1, le=1000, description="Consecutive inconclusive checks that pause the rollout."
    )
    min_requests: int = pydantic.Field(
        default=50, ge=0, le=1_000_000_000, description="Fewer canary requests than this in the window: inconclusive."
    )
    continuous: bool = pydantic.Field(
        default=True,
        description=(
            "Between checks, every continuousInterval, test the counts since the canary started with an"
            " always-valid test, and roll back the moment it shows the canary beyond a limit or tolerance,"
            " whatever failureThreshold says. Its false-rollback chance over the whole canary is at most"
            " (1 - confidence) / 2 per metric, however often it looks."
        ),
    )
    continuous_interval: Annotated[Duration, _within(0.1, 3600)] = pydantic.Field(
        default="15s", description="How often the continuous test reads the counts (about one scrape interval)."
    )
    incident_aware: bool = pydantic.Field(
        default=True,
        description=(
            "A canary beyond a max/min limit while the primary breaches it too, over the same window, is not"
            " blamed: the check is inconclusive (PrimaryBreaches) unless the canary's share is also shown"
            " above twice the primary's."
        ),
    )
    pass_rule: Literal["no-harm", "proven"] = pydantic.Field(
        default="no-harm",
        description=(
            "When a step may advance. no-harm: no evidence of harm since the canary started, no value in the"
            " window past a fixed max or min, and at least minRequests canary requests at this step; the"
            " promotion records the smallest regression that"
            " evidence would have caught. proven: a check must show every metric within its limits."
        ),
    )
    max_step_extension: Annotated[Duration, _within(0)] | None = pydantic.Field(
        default=None,
        description=(
            "How long a step may run past its plan while checks lack traffic, before the rollout holds"
            " (InsufficientTraffic); without it, inconclusiveThreshold applies."
        ),
    )
    prometheus: PrometheusSpec = pydantic.Field(
        default=PrometheusSpec(), description="Where the metrics come from; omit it to use the operator's defaults."
    )
    metrics: list[Metric] = pydantic.Field(min_length=1, max_length=20)

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

    short: Annotated[Duration, _within(1)] = "5m"
    long: Annotated[Duration, _within(1)] = "1h"
    factor: float = pydantic.Field(
        default=14.4, gt=0, le=10000, description="Burn rate (budget spent / budget) that fails."
    )


class SLO(_Model):
    objective: float = pydantic.Field(gt=0, lt=100, description="Percent of requests answered without 5xx, e.g. 99.9.")
    window: Annotated[Duration, _within(60)] = pydantic.Field(
        default="30d", description="The SLO window the error budget is counted over, from 1m to 366d."
    )
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
    steps: list[Step] = pydantic.Field(min_length=1, max_length=100)
    analysis: Analysis
    progress_deadline: Annotated[Duration, _within(1)] = pydantic.Field(
        default="10m",
        description=(
            "How long any wait may last without progress: canary pods becoming ready, the primary rolling out,"
            " checks staying inconclusive. A manual gate (pause without duration) and a pause by request are not"
            " bounded by it, unless the rollout is blocked (an invalid spec, a route or Prometheus refused, the"
            " target deleted): a canary blocked for this long is given back."
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

    @pydantic.model_validator(mode="after")
    def _routes_supported(self) -> CanaryRolloutSpec:
        problems = route_problems(self.traffic_routing.kind, self.steps)
        if problems:
            raise ValueError("; ".join(problems))
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
    WEBHOOK_NOT_ALLOWED = "WebhookNotAllowed"  # a webhook or notification URL outside the operator's allow-list
    PAUSED_BY_REQUEST = "PausedByRequest"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    # A canary blocked (invalid spec, route or Prometheus refused, target gone) for progressDeadline: given back.
    BLOCKED_DEADLINE_EXCEEDED = "BlockedDeadlineExceeded"
    TARGET_NOT_FOUND = "TargetNotFound"
    INVALID_SPEC = "InvalidSpec"
    OBJECT_CONFLICT = "ObjectConflict"
    TARGET_CLAIMED = "TargetClaimed"
    # The user's HPA (spec.autoscalerRef) and the primary's copy of it (condition Autoscaled).
    AUTOSCALER_CARRIED_OVER = "AutoscalerCarriedOver"
    AUTOSCALER_NOT_FOUND = "AutoscalerNotFound"
    AUTOSCALER_UNREADABLE = "AutoscalerUnreadable"  # the HPAs cannot be read (RBAC, the API): decisions go on
    # Why a traffic router cannot split the user's route (routing.RouterError).
    ROUTE_NOT_FOUND = "RouteNotFound"
    ROUTE_RULE_NOT_FOUND = "RouteRuleNotFound"
    ROUTE_RULE_AMBIGUOUS = "RouteRuleAmbiguous"
    ROUTE_BACKENDS_WRONG = "RouteBackendsWrong"
    ROUTE_CONFLICT = "RouteConflict"
    DESTINATION_RULE_NOT_FOUND = "DestinationRuleNotFound"
    WRONG_SUBSETS = "WrongSubsets"
    RECONCILE_ERROR = "ReconcileError"
    ERROR_BUDGET_LOW = "ErrorBudgetLow"
    ERROR_BUDGET_EXHAUSTED = "ErrorBudgetExhausted"
    ERROR_BUDGET_UNKNOWN = "ErrorBudgetUnknown"
    # Why a check was inconclusive (the judge's causes), as condition reasons.
    INCONCLUSIVE = "Inconclusive"
    INSUFFICIENT_TRAFFIC = "InsufficientTraffic"
    PRIMARY_BREACHES = "PrimaryBreaches"  # a limit breached by both arms: a shared incident, not the canary
    NO_DATA = "NoData"
    PROMETHEUS_UNREACHABLE = "PrometheusUnreachable"
    QUERY_REJECTED = "QueryRejected"
    PROMETHEUS_BAD_RESPONSE = "PrometheusBadResponse"
    # Why a rollout's Prometheus cannot be used at all (``endpoints``); no request was sent.
    PROMETHEUS_NOT_ALLOWED = "PrometheusNotAllowed"
    PROMETHEUS_ADDRESS_MISSING = "PrometheusAddressMissing"
    PROMETHEUS_CREDENTIALS = "PrometheusCredentials"


# The Stalled reasons no tick of the operator can clear, only a person (the spec, someone else's object, a route, an
# access the operator refuses, the error budget): the alert CanaryRolloutBlocked names exactly these.
NEEDS_A_PERSON = frozenset(
    {
        Reason.INVALID_SPEC,
        Reason.OBJECT_CONFLICT,
        Reason.TARGET_CLAIMED,
        Reason.TARGET_NOT_FOUND,
        Reason.WEBHOOK_NOT_ALLOWED,
        Reason.ROUTE_NOT_FOUND,
        Reason.ROUTE_RULE_NOT_FOUND,
        Reason.ROUTE_RULE_AMBIGUOUS,
        Reason.ROUTE_BACKENDS_WRONG,
        Reason.ROUTE_CONFLICT,
        Reason.DESTINATION_RULE_NOT_FOUND,
        Reason.WRONG_SUBSETS,
        Reason.ERROR_BUDGET_EXHAUSTED,
        Reason.ERROR_BUDGET_UNKNOWN,
        Reason.QUERY_REJECTED,
        Reason.PROMETHEUS_BAD_RESPONSE,
        Reason.PROMETHEUS_NOT_ALLOWED,
        Reason.PROMETHEUS_ADDRESS_MISSING,
        Reason.PROMETHEUS_CREDENTIALS,
    }
)


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
# A canary is under way and users may be served by it: analysed, or being promoted (it serves until the primary
# has rolled out its revision). Its weight is the step's, a rollback applies, and a block is bounded.
EXPOSED_PHASES = ANALYSING_PHASES | {Phase.PROMOTING}


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


class Evidence(_Status):
    """The counts since the canary started and the always-valid test on them (the continuous analysis)."""

    metric: str = ""
    window: str
    canary_bad: float
    canary_requests: float
    primary_bad: float | None = None
    primary_requests: float | None = None
    p_value: float = pydantic.Field(description="Always-valid p of 'within the limit or tolerance'.")
    verdict: Verdict


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
    evidence: Evidence | None = pydantic.Field(default=None, description="The counts since the canary started.")
    detectable: str | None = pydantic.Field(
        default=None, description="The smallest regression the evidence since the start catches 90% of the time."
    )


class EvidenceRecord(_Status):
    """The last continuous test between checks: compact, no queries."""

    at: str
    verdict: Verdict
    reason: str
    metrics: list[Evidence] = []


class CheckRecord(_Status):
    at: str
    release: str | None = None
    window: str | None = None
    verdict: Verdict
    reason: str
    cause: str | None = pydantic.Field(default=None, description="Why inconclusive, as a condition reason.")
    weight: int = 0
    metrics: list[MetricResult] = []
    cleared: bool | None = pydantic.Field(
        default=None, description="pass rule no-harm: no evidence of harm and enough requests at this step."
    )
    detectable: str | None = pydantic.Field(default=None, description="What the evidence would have caught.")


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
    detectable: str | None = None  # promoted (pass rule no-harm): the regression its evidence would have caught
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


class Block(_Status):
    """Progress is impossible until someone acts: why, and since when (a blocked canary's deadline starts here)."""

    reason: Reason
    message: str
    since: str
    gave_back: bool = pydantic.Field(
        default=False,
        description=(
            "progressDeadline passed while blocked: the canary was rolled back with the spec last acted with"
            " (appliedSpec), and its traffic is kept on the primary while the block lasts."
        ),
    )


def step_label(phase: Phase | None, current_step_index: int | None, steps: int) -> str | None:
    """The step as people count it, "n/N" (1-based), for kubectl's STEP column; None when no canary is under way.

    ``currentStepIndex`` equals the number of steps once they are all done, so it is capped at N.
    """
    if phase not in EXPOSED_PHASES:
        return None
    index = current_step_index or 0
    return f"{min(index + 1, steps)}/{steps}"


class CanaryRolloutStatus(_Status):
    # Not frozen: the state machine works on a copy of it (the draft of the next status), field by field.
    model_config = pydantic.ConfigDict(frozen=False)

    phase: Phase | None = None
    observed_generation: int | None = None
    message: str | None = None
    target: str | None = pydantic.Field(
        default=None, description="The Deployment taken over (spec.targetRef.name then); never another one."
    )
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
    evidence: EvidenceRecord | None = pydantic.Field(
        default=None, description="The last continuous (always-valid) test of the counts since the canary started."
    )
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
    blocked: Block | None = pydantic.Field(
        default=None, description="While progress is impossible until someone acts: why, and since when."
    )
    applied_spec: dict[str, Any] | None = pydantic.Field(
        default=None,
        description=(
            "The spec the rollout last acted with. A canary blocked by a spec that became invalid (or a route"
            " that cannot be found) gives its traffic back with this spec's router and target."
        ),
    )
    services_digest: str | None = pydantic.Field(
        default=None,
        description=(
            "A digest of the Services (ports, selectors) as last made; a spec whose Services differ (service.port,"
            " the router) makes them again, and this is written once they are."
        ),
    )
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
        path = ".".join(str(p) for p in item["loc"] if p not in ("function-after",))
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"spec.{path}: {message}" if path else f"spec: {message}")
    return "; ".join(lines)
