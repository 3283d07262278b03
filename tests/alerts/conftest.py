"""What the alerts and the dashboard may read, and the PromQL reader that checks they read only that.

A dashboard or an alert over a metric nobody exports shows nothing and never fires, silently.
The names come from the operator's own registry (``telemetry.REGISTRY``), so renaming a metric
there fails these tests until the queries follow.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from canary_bench import prometheus
from canary_operator import telemetry

# The applications' RED metrics the built-in analysis templates query, and the scrape's own series.
APPLICATION_METRICS = frozenset({"http_requests_total", "http_request_duration_seconds_bucket"})
SCRAPE_METRICS = frozenset({"up"})

# The sample names a family of each type exposes (the ``_created`` series are no use to a query).
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}

# Words of PromQL that look like metric names: binary and set operators, modifiers, literals.
KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
    | {"inf", "nan"}
)

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\[\[[^\]]*\]\]|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
# A name not glued to a number (15m, 1e3) and not called (rate(, sum by (...) ( after grouping is gone).
_NAME = re.compile(r"(?<![\w:.])[a-zA-Z_:][\w:]*(?![\w:])(?!\s*\()")


def exported_metrics() -> frozenset[str]:
    names = set(APPLICATION_METRICS | SCRAPE_METRICS)
    for family in telemetry.REGISTRY.collect():
        names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type])
    return frozenset(names)


def metrics_read_by(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana variables allowed), without parsing it fully.

    Strings go first (they hold label values and regexes), then variables, label matchers, ranges
    and the label lists of by/without/on/ignoring/group_*; what is left that is neither called nor
    a keyword is a metric name.
    """
    text = _STRING.sub(" ", expr)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _NAME.findall(text) if name.lower() not in KEYWORDS}


@pytest.fixture(scope="session")
def unknown_metrics() -> Callable[[str], set[str]]:
    """``unknown_metrics(expr)``: what an expression reads that neither the operator, the apps nor the scrape export."""
    known = exported_metrics()
    return lambda expr: metrics_read_by(expr) - known


@pytest.fixture(scope="session")
def promtool() -> str:
    """Fail (never skip) without promtool: a skipped test would let a broken alert ship."""
    try:
        return prometheus.require_binary("promtool")
    except prometheus.PrometheusMissing as e:
        pytest.fail(str(e), pytrace=False)
