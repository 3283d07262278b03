"""PromQL for the RED signals, per arm.

Every metric is asked twice, once for the canary's pods and once for the
primary's, over the same window and at the same evaluation time, so the two
values are comparable. Pods are selected the way Kubernetes scraping labels
them (``namespace`` and ``pod``); a Deployment's pods are named
``<deployment>-<replicaset hash>-<suffix>``.

The built-in templates read the conventional application metrics
``http_requests_total{code=...}`` and ``http_request_duration_seconds_bucket``.
"""

from __future__ import annotations

import dataclasses

from canary_operator import models, names


@dataclasses.dataclass(frozen=True)
class Arm:
    """One side of the comparison: the canary or the primary Deployment."""

    role: str  # "canary" or "primary"
    namespace: str
    target: str
    workload: str

    @property
    def pod_regex(self) -> str:
        # Kubernetes names hold [a-z0-9.-]: only the dot is special in a regex (no backslash: PromQL strings).
        return self.workload.replace(".", "[.]") + "-[a-z0-9]+-[a-z0-9]+"

    @property
    def selector(self) -> str:
        return f'namespace="{self.namespace}",pod=~"{self.pod_regex}"'


def arms(namespace: str, target: str) -> tuple[Arm, Arm]:
    """The (canary, primary) arms of a rollout of Deployment ``target``."""
    return (
        Arm("canary", namespace, target, names.canary(target)),
        Arm("primary", namespace, target, names.primary(target)),
    )


_TEMPLATES: dict[models.MetricTemplate, str] = {
    # Percent of requests answered 5xx. A window with requests but no 5xx series is 0%, not "no data".
    models.MetricTemplate.ERROR_RATE: (
        '100 * (sum(rate(http_requests_total{{{sel},code=~"5.."}}[{w}])) or vector(0))'
        " / sum(rate(http_requests_total{{{sel}}}[{w}]))"
    ),
    models.MetricTemplate.LATENCY_P99: (
        "1000 * histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[{w}])))"
    ),
    models.MetricTemplate.REQUEST_RATE: "sum(rate(http_requests_total{{{sel}}}[{w}]))",
}


def window(metric: models.Metric, analysis: models.Analysis) -> str:
    return metric.interval or analysis.interval


def render(metric: models.Metric, analysis: models.Analysis, arm: Arm) -> str:
    """The PromQL that measures ``metric`` for one arm."""
    w = window(metric, analysis)
    if metric.template is not None:
        return _TEMPLATES[metric.template].format(sel=arm.selector, w=w)
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
    return f"sum(increase(http_requests_total{{{arm.selector}}}[{w}]))"


def error_count(arm: Arm, w: str) -> str:
    """5xx answers in the window; 0 (not "no data") when the arm answered but never failed."""
    return f'sum(increase(http_requests_total{{{arm.selector},code=~"5.."}}[{w}])) or vector(0)'


def latency_buckets(arm: Arm, w: str) -> str:
    """Cumulative request counts per latency bucket in the window, one series per ``le``."""
    return f"sum by (le) (increase(http_request_duration_seconds_bucket{{{arm.selector}}}[{w}]))"


def error_ratio(arm: Arm, w: str) -> str:
    return (
        f'(sum(rate(http_requests_total{{{arm.selector},code=~"5.."}}[{w}])) or vector(0))'
        f" / sum(rate(http_requests_total{{{arm.selector}}}[{w}]))"
    )


def service_error_ratio(namespace: str, target: str, w: str) -> str:
    """The whole service's error ratio (target, primary and canary pods) over the SLO window."""
    pods = f"{target.replace('.', '[.]')}(-primary|-canary)?-[a-z0-9]+-[a-z0-9]+"
    selector = f'namespace="{namespace}",pod=~"{pods}"'
    return (
        f'(sum(increase(http_requests_total{{{selector},code=~"5.."}}[{w}])) or vector(0))'
        f" / sum(increase(http_requests_total{{{selector}}}[{w}]))"
    )
