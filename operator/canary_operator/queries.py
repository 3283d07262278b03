"""PromQL for the RED signals, per arm.

Every metric is asked twice, once for the canary's pods and once for the
primary's, over the same window and at the same evaluation time, so the two
values are comparable. Pods are selected the way Kubernetes scraping labels
them (``namespace`` and ``pod``); a Deployment's pods are named
``<deployment>-<replicaset hash>-<suffix>``.

The built-in templates read, per data source (``trafficRouting.metrics``):
- ``app``: the conventional application metrics ``http_requests_total{code=...}`` and
  ``http_request_duration_seconds_bucket``, per pod;
- ``dataPlane`` with Istio: ``istio_requests_total`` and ``istio_request_duration_milliseconds_bucket``
  as the destination's sidecar reports them (``reporter="destination"``), per ``destination_workload``;
- ``dataPlane`` with NGINX: ``nginx_ingress_controller_requests{status=...}`` and
  ``nginx_ingress_controller_request_duration_seconds_bucket``, per upstream ``service`` (the apex
  Service is the primary's, the canary Ingress sends to ``<target>-canary``);
- ``dataPlane`` with Gateway API: Envoy's ``envoy_cluster_upstream_rq{envoy_response_code=...}`` and
  ``envoy_cluster_upstream_rq_time_bucket`` (milliseconds), per upstream cluster named
  ``<namespace>_<service>_<port>`` as Envoy-based gateways such as Contour name them.
The p99 is always ``histogram_quantile`` over the histogram's buckets, never a mean.
"""

from __future__ import annotations

import dataclasses

from canary_operator import models, names


@dataclasses.dataclass(frozen=True)
class Source:
    """Where the RED series come from: their names, the label of the status code, how an arm is selected."""

    name: str
    requests: str  # counter of requests, with a status code label
    code: str  # the label holding the HTTP status code
    buckets: str  # the latency histogram's _bucket series
    le_seconds: float  # seconds per unit of the histogram's ``le`` (0.001: milliseconds)

    def selector(self, namespace: str, workload: str, service: str) -> str:
        """Matchers of one arm: its pods (app), its workload (Istio), its upstream Service (NGINX, Envoy)."""
        if self.name == "istio":
            return (
                f'reporter="destination",destination_workload_namespace="{namespace}",destination_workload="{workload}"'
            )
        if self.name == "nginx":
            return f'namespace="{namespace}",service="{service}"'
        if self.name == "envoy":
            return f'envoy_cluster_name=~"{namespace}_{_regex(service)}_[0-9]+"'
        return f'namespace="{namespace}",pod=~"{pod_regex(workload)}"'

    def service_selector(self, namespace: str, target: str) -> str:
        """Matchers of the whole service: the target and both arms."""
        if self.name == "istio":
            workloads = f"{_regex(target)}(-primary|-canary)?"
            return (
                f'reporter="destination",destination_workload_namespace="{namespace}",'
                f'destination_workload=~"{workloads}"'
            )
        if self.name == "nginx":
            return f'namespace="{namespace}",service=~"{_regex(target)}(-canary)?"'
        if self.name == "envoy":
            return f'envoy_cluster_name=~"{namespace}_{_regex(target)}(-primary|-canary)?_[0-9]+"'
        pods = f"{_regex(target)}(-primary|-canary)?-[a-z0-9]+-[a-z0-9]+"
        return f'namespace="{namespace}",pod=~"{pods}"'


def _regex(name: str) -> str:
    # Kubernetes names hold [a-z0-9.-]: only the dot is special in a regex (no backslash: PromQL strings).
    return name.replace(".", "[.]")


def pod_regex(workload: str) -> str:
    return _regex(workload) + "-[a-z0-9]+-[a-z0-9]+"


APP = Source("app", "http_requests_total", "code", "http_request_duration_seconds_bucket", 1.0)
SOURCES = {
    "app": APP,
    "istio": Source(
        "istio", "istio_requests_total", "response_code", "istio_request_duration_milliseconds_bucket", 0.001
    ),
    "nginx": Source(
        "nginx",
        "nginx_ingress_controller_requests",
        "status",
        "nginx_ingress_controller_request_duration_seconds_bucket",
        1.0,
    ),
    "envoy": Source(
        "envoy", "envoy_cluster_upstream_rq", "envoy_response_code", "envoy_cluster_upstream_rq_time_bucket", 0.001
    ),
}
_DATA_PLANES = {"istio": "istio", "nginx": "nginx", "gatewayAPI": "envoy"}


def source_of(routing: models.TrafficRouting) -> Source:
    """The series the built-in templates read: the app's own, or those of the router's data plane."""
    if routing.metrics == "dataPlane":
        return SOURCES[_DATA_PLANES[routing.kind]]  # the model refuses dataPlane for the replicas router
    return APP


@dataclasses.dataclass(frozen=True)
class Arm:
    """One side of the comparison: the canary or the primary Deployment."""

    role: str  # "canary" or "primary"
    namespace: str
    target: str
    workload: str
    source: Source = APP
    service: str = ""  # the Service the data plane sends this arm's requests to

    @property
    def pod_regex(self) -> str:
        return pod_regex(self.workload)

    @property
    def selector(self) -> str:
        return self.source.selector(self.namespace, self.workload, self.service or self.workload)


def arms(namespace: str, target: str, source: Source = APP) -> tuple[Arm, Arm]:
    """The (canary, primary) arms of a rollout of Deployment ``target``.

    Behind NGINX the primary's requests go through the apex Service (the user's Ingress names it).
    """
    primary_service = names.apex(target) if source.name == "nginx" else names.primary(target)
    return (
        Arm("canary", namespace, target, names.canary(target), source, names.canary(target)),
        Arm("primary", namespace, target, names.primary(target), source, primary_service),
    )


_TEMPLATES: dict[models.MetricTemplate, str] = {
    # Percent of requests answered 5xx. A window with requests but no 5xx series is 0%, not "no data".
    models.MetricTemplate.ERROR_RATE: (
        '100 * (sum(rate({requests}{{{sel},{code}=~"5.."}}[{w}])) or vector(0)) / sum(rate({requests}{{{sel}}}[{w}]))'
    ),
    models.MetricTemplate.LATENCY_P99: "{ms} * histogram_quantile(0.99, sum by (le) (rate({buckets}{{{sel}}}[{w}])))",
    models.MetricTemplate.REQUEST_RATE: "sum(rate({requests}{{{sel}}}[{w}]))",
}


def window(metric: models.Metric, analysis: models.Analysis) -> str:
    return metric.interval or analysis.interval


def render(metric: models.Metric, analysis: models.Analysis, arm: Arm) -> str:
    """The PromQL that measures ``metric`` for one arm."""
    w = window(metric, analysis)
    if metric.template is not None:
        source = arm.source
        return _TEMPLATES[metric.template].format(
            sel=arm.selector,
            w=w,
            requests=source.requests,
            code=source.code,
            buckets=source.buckets,
            ms=f"{1000 * source.le_seconds:g}",
        )
    assert metric.query is not None  # guaranteed by the model
    values = {
        "namespace": arm.namespace,
        "workload": arm.workload,
        "pod": arm.pod_regex,
        "interval": w,
        "target": arm.target,
        "primary": f"{arm.target}-primary",
        "canary": f"{arm.target}-canary",
    }
    return models.QUERY_VARIABLE.sub(lambda m: values[m.group(1)], metric.query)


def request_count(arm: Arm, w: str) -> str:
    """Requests the arm answered in the window: the sample size behind its other values."""
    return f"sum(increase({arm.source.requests}{{{arm.selector}}}[{w}]))"


def error_count(arm: Arm, w: str) -> str:
    """5xx answers in the window; 0 (not "no data") when the arm answered but never failed."""
    source = arm.source
    return f'sum(increase({source.requests}{{{arm.selector},{source.code}=~"5.."}}[{w}])) or vector(0)'


def latency_buckets(arm: Arm, w: str) -> str:
    """Cumulative request counts per latency bucket in the window, one series per ``le`` (in the source's unit)."""
    return f"sum by (le) (increase({arm.source.buckets}{{{arm.selector}}}[{w}]))"


def error_ratio(arm: Arm, w: str) -> str:
    source = arm.source
    return (
        f'(sum(rate({source.requests}{{{arm.selector},{source.code}=~"5.."}}[{w}])) or vector(0))'
        f" / sum(rate({source.requests}{{{arm.selector}}}[{w}]))"
    )


def service_error_ratio(namespace: str, target: str, w: str, source: Source = APP) -> str:
    """The whole service's error ratio (target, primary and canary) over the SLO window."""
    selector = source.service_selector(namespace, target)
    return (
        f'(sum(increase({source.requests}{{{selector},{source.code}=~"5.."}}[{w}])) or vector(0))'
        f" / sum(increase({source.requests}{{{selector}}}[{w}]))"
    )
