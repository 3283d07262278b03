"""The Grafana dashboard shipped in charts/canary-operator/files/dashboard.json, its queries run by a real Prometheus.

Grafana is not here to draw it, so these tests look for what breaks a dashboard without a sound:
a panel that ignores the chosen datasource, a query over a metric nobody exports, PromQL that
Prometheus rejects, a query that shows nothing for a rollout that has released. One Prometheus,
backfilled with an hour in the life of one rollout (a canary under way at 20%, three promotions,
one rollback), answers every query at the end of that hour, with Grafana's variables filled in as
a user would fill them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import helpers
import pytest

from canary_bench import prometheus

DASHBOARD = helpers.ROOT / "charts" / "canary-operator" / "files" / "dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

START = prometheus.EPOCH
END = START + 3600
STEP = 15.0
OPERATOR = {"job": "canary-operator", "instance": "10.0.0.7:8080"}
ROLLOUT = {**OPERATOR, "namespace": "shop", "rollout": "web"}
PHASES = ("Initializing", "Stable", "Progressing", "Paused", "Promoting", "Succeeded", "RolledBack")
# (when, lead time) of each promotion and (when, time to detect, time to restore) of the rollback.
PROMOTIONS = ((START + 300, 200.0), (START + 1200, 250.0), (END - 60, 280.0))
ROLLBACKS = ((START + 1800, 90.0, 30.0),)
BOUNDS = (0.01, 0.1, 1.0, 60.0, 300.0, 600.0)

# Grafana's variables: one rollout picked, or "All" (allValue .*); and its built-in ones.
CHOICES = {"one rollout": {"namespace": "shop", "rollout": "web"}, "all": {"namespace": ".*", "rollout": ".*"}}
BUILT_IN = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h", "datasource": "prometheus"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def load() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Every PromQL expression by where it is: panel targets, annotations, the variables' selectors."""
    found = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            found[f"{panel['title']} / {target['refId']}"] = target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if annotation.get("datasource") == DATASOURCE:
            found[f"annotation {annotation['name']}"] = annotation["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = _LABEL_VALUES.match(variable["query"])
            assert match, f"variable {variable['name']}: not label_values(selector, label)"
            found[f"variable {variable['name']}"] = match["selector"]
    return found


def variables_in(expr: str) -> set[str]:
    return {next(group for group in match.groups() if group) for match in _VARIABLE.finditer(expr)}


def fill_in(expr: str, choice: dict[str, str]) -> str:
    """The query Grafana sends, with its variables replaced."""
    values = {**BUILT_IN, **choice}
    return _VARIABLE.sub(lambda match: values[next(group for group in match.groups() if group)], expr)


# ---------------------------------------------------------------- an hour of one rollout, backfilled


def sampled(
    name: str, labels: dict[str, str], value_at: Callable[[float], float | None], kind: prometheus.Kind
) -> prometheus.Series:
    """A series scraped every 15 s over the hour; ``value_at`` answers None before the series exists."""
    times = [START + index * STEP for index in range(int((END - START) / STEP) + 1)]
    samples = [(t, v) for t in times if (v := value_at(t)) is not None]
    return prometheus.Series(name, labels, samples, kind)


def gauge(name: str, labels: dict[str, str], value: float) -> prometheus.Series:
    return sampled(name, labels, lambda t: value, "gauge")


def steady(name: str, labels: dict[str, str], per_second: float) -> prometheus.Series:
    return sampled(name, labels, lambda t: per_second * (t - START), "counter")


def events(name: str, labels: dict[str, str], times: list[float]) -> prometheus.Series:
    """A counter the operator creates at its first event, already at 1 (as prometheus_client does)."""
    return sampled(name, labels, lambda t: sum(1.0 for e in times if e <= t) if t >= times[0] else None, "counter")


def observed(name: str, labels: dict[str, str], observations: list[tuple[float, float]]) -> list[prometheus.Series]:
    """A histogram born at its first observation: buckets, count and sum."""
    first = observations[0][0]

    def cumulative(bound: float, weight: Callable[[float], float]) -> Callable[[float], float | None]:
        return lambda t: sum(weight(v) for e, v in observations if e <= t and v <= bound) if t >= first else None

    series = [
        sampled(f"{name}_bucket", {**labels, "le": repr(bound)}, cumulative(bound, lambda v: 1.0), "histogram")
        for bound in BOUNDS
    ]
    inf = float("inf")
    series.append(sampled(f"{name}_bucket", {**labels, "le": "+Inf"}, cumulative(inf, lambda v: 1.0), "histogram"))
    series.append(sampled(f"{name}_count", labels, cumulative(inf, lambda v: 1.0), "histogram"))
    series.append(sampled(f"{name}_sum", labels, cumulative(inf, lambda v: v), "histogram"))
    return series


def timed(name: str, labels: dict[str, str], per_second: float, seconds: float) -> list[prometheus.Series]:
    """A histogram of steady calls that each take `seconds`."""
    series = [
        steady(f"{name}_bucket", {**labels, "le": le}, per_second if seconds <= bound else 0.0)
        for le, bound in [*((repr(b), b) for b in BOUNDS), ("+Inf", float("inf"))]
    ]
    series.append(steady(f"{name}_count", labels, per_second))
    series.append(steady(f"{name}_sum", labels, per_second * seconds))
    return [prometheus.Series(s.name, s.labels, s.samples, "histogram") for s in series]


def an_hour_of_one_rollout() -> list[prometheus.Series]:
    prefix = "canary_operator"
    promoted = [t for t, _ in PROMOTIONS]
    rolled_back = [t for t, _, _ in ROLLBACKS]
    return [
        gauge("up", OPERATOR, 1),
        steady("process_cpu_seconds_total", OPERATOR, 0.02),
        gauge("process_resident_memory_bytes", OPERATOR, 80e6),
        steady(f"{prefix}_reconciles_total", {**OPERATOR, "result": "ok"}, 1.0),
        steady(f"{prefix}_reconciles_total", {**OPERATOR, "result": "error"}, 0.01),
        *timed(f"{prefix}_reconcile_duration_seconds", OPERATOR, 1.0, 0.05),
        *timed(f"{prefix}_provider_query_duration_seconds", OPERATOR, 0.4, 0.02),
        steady(f"{prefix}_provider_query_errors_total", {**OPERATOR, "reason": "unreachable"}, 0.001),
        *(
            gauge(f"{prefix}_rollout_phase", {**ROLLOUT, "phase": p}, 1.0 if p == "Progressing" else 0.0)
            for p in PHASES
        ),
        gauge(f"{prefix}_rollout_weight_percent", ROLLOUT, 20),
        gauge(f"{prefix}_rollout_inconclusive_checks", ROLLOUT, 1),
        gauge(f"{prefix}_rollout_canary_started_timestamp_seconds", ROLLOUT, END - 600),
        gauge(f"{prefix}_rollout_planned_duration_seconds", ROLLOUT, 120),
        gauge(f"{prefix}_provider_reachable", ROLLOUT, 1),
        *(
            steady(f"{prefix}_checks_total", {**ROLLOUT, "metric": "error-rate", "verdict": verdict}, per_second)
            for verdict, per_second in (("Pass", 0.1), ("Fail", 0.01), ("Inconclusive", 0.01))
        ),
        events(f"{prefix}_releases_total", {**ROLLOUT, "outcome": "promoted"}, promoted),
        events(f"{prefix}_releases_total", {**ROLLOUT, "outcome": "rolled_back"}, rolled_back),
        *observed(f"{prefix}_lead_time_seconds", ROLLOUT, list(PROMOTIONS)),
        *observed(f"{prefix}_time_to_detect_seconds", ROLLOUT, [(t, detect) for t, detect, _ in ROLLBACKS]),
        *observed(f"{prefix}_time_to_restore_seconds", ROLLOUT, [(t, restore) for t, _, restore in ROLLBACKS]),
        *prometheus.request_series("shop", "web-primary-5d8f7c9b6-x2x7q", start=START, end=END, rps=9),
        *prometheus.request_series("shop", "web-canary-7f9c8d6b5-k4m2p", start=START, end=END, rps=1, error_ratio=0.05),
    ]


@pytest.fixture(scope="module")
def server(prometheus_tools: None) -> Iterator[prometheus.PrometheusServer]:
    with prometheus.backfilled_prometheus(an_hour_of_one_rollout()) as started:
        yield started


def answer(server: prometheus.PrometheusServer, expr: str, choice: dict[str, str]) -> list[dict[str, Any]]:
    return server.query(fill_in(expr, choice), at=END)


def value_of(server: prometheus.PrometheusServer, title: str, ref: str = "A") -> float:
    result = answer(server, queries(load())[f"{title} / {ref}"], CHOICES["one rollout"])
    assert len(result) == 1, f"{title} / {ref} answered {result}"
    return float(result[0]["value"][1])


# ---------------------------------------------------------------- the tests


def test_the_dashboard_is_grafana_json_with_a_datasource_a_namespace_and_a_rollout_to_choose() -> None:
    dashboard = load()
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] == "canary-operator"
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "rollout"]
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    for name in ("namespace", "rollout"):
        assert variables[name]["datasource"] == DATASOURCE
        assert (variables[name]["multi"], variables[name]["includeAll"], variables[name]["allValue"]) == (
            True,
            True,
            ".*",
        )
    assert "$namespace" in variables["rollout"]["query"], "the rollouts offered are those of the chosen namespaces"


def test_every_panel_and_query_reads_the_chosen_prometheus() -> None:
    dashboard = load()
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel.get("datasource") == DATASOURCE, f"panel {panel['title']!r}"
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE, f"panel {panel['title']!r}, query {target['refId']}"
            assert target["expr"].strip()
    annotations = [a for a in dashboard["annotations"]["list"] if not a.get("builtIn")]
    assert [a["datasource"] for a in annotations] == [DATASOURCE]


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    laid_out = panels(load())
    assert len({panel["id"] for panel in laid_out}) == len(laid_out)
    cells: dict[tuple[int, int], str] = {}
    for panel in laid_out:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']!r} is wider than the dashboard"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_there_are_release_annotations_and_the_delivery_panels() -> None:
    dashboard = load()
    titles = {panel["title"] for panel in panels(dashboard)}
    assert {"Deployments per day", "Change failure rate", "Median lead time", "Median time to restore"} <= titles
    [releases] = [a for a in dashboard["annotations"]["list"] if not a.get("builtIn")]
    assert "canary_operator_releases_total" in releases["expr"]


def test_the_application_panels_repeat_per_rollout_so_their_pod_regex_names_one() -> None:
    section = None
    for panel in load()["panels"]:
        if panel["type"] == "row":
            section = panel
        elif any("http_request" in target["expr"] for target in panel["targets"]):
            assert section is not None and section.get("repeat") == "rollout", f"{panel['title']!r}"


@pytest.mark.parametrize(("where", "expr"), queries(load()).items(), ids=list(queries(load())))
def test_every_query_reads_only_metrics_that_exist(
    where: str, expr: str, unknown_metrics: Callable[[str], set[str]]
) -> None:
    assert unknown_metrics(expr) == set()


@pytest.mark.parametrize(("where", "expr"), queries(load()).items(), ids=list(queries(load())))
def test_every_query_uses_only_variables_grafana_knows(where: str, expr: str) -> None:
    dashboard_variables = {variable["name"] for variable in load()["templating"]["list"]}
    assert variables_in(expr) <= dashboard_variables | set(BUILT_IN)


@pytest.mark.parametrize("choice", CHOICES.values(), ids=list(CHOICES))
def test_every_query_is_promql_that_shows_a_released_rollout(
    server: prometheus.PrometheusServer, choice: dict[str, str]
) -> None:
    """Prometheus parses each query (HTTP 400 otherwise) and answers it with data."""
    problems = []
    for where, expr in queries(load()).items():
        try:
            if not answer(server, expr, choice):
                problems.append(f"{where}: shows nothing for a rollout with releases and a canary under way")
        except (KeyError, prometheus.PrometheusError) as e:
            problems.append(f"{where}: {e!r}")
    assert not problems, "\n".join(problems)


def test_the_variables_offer_the_namespaces_and_rollouts_there_are(server: prometheus.PrometheusServer) -> None:
    offered = {}
    for variable in load()["templating"]["list"]:
        if variable["type"] == "query":
            match = _LABEL_VALUES.match(variable["query"])
            assert match is not None
            result = answer(server, match["selector"], CHOICES["all"])
            offered[variable["name"]] = {series["metric"].get(match["label"]) for series in result}
    assert offered == {"namespace": {"shop"}, "rollout": {"web"}}


def test_the_canary_and_primary_panels_tell_the_two_arms_apart(server: prometheus.PrometheusServer) -> None:
    assert value_of(server, "Error rate (5xx)", "A") == pytest.approx(0.05)
    # The primary answered no 5xx: it has no code="500" series, and still shows 0 rather than nothing.
    assert value_of(server, "Error rate (5xx)", "B") == 0.0
    assert value_of(server, "Latency p99", "A") > 0


def test_the_delivery_panels_count_every_release_including_a_counters_first(
    server: prometheus.PrometheusServer,
) -> None:
    # The operator creates a release counter at its first release, already at 1; increase() alone misses it.
    assert value_of(server, "Deployments per day") == pytest.approx(len(PROMOTIONS))
    assert value_of(server, "Change failure rate") == pytest.approx(len(ROLLBACKS) / (len(PROMOTIONS) + len(ROLLBACKS)))
    assert 60 < value_of(server, "Median lead time") <= 300
    assert 60 < value_of(server, "Median time to detect") <= 300
    assert 1 < value_of(server, "Median time to restore") <= 60
