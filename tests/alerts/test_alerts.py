"""The alerts shipped in charts/canary-operator/files/alerts.yaml, checked and unit-tested by the real promtool.

``promtool test rules`` replays the series in alerts.test.yaml and compares the alerts that fire,
with their labels and rendered annotations, to the expected ones. These tests run it, and make sure
the file keeps its promises: a firing and a quiet case for every alert, a runbook behind every
runbook_url, and queries over metrics the operator really exports.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any

import helpers
import pytest
import yaml

from canary_operator import models

ALERTS = helpers.ROOT / "charts" / "canary-operator" / "files" / "alerts.yaml"
UNIT_TESTS = helpers.ROOT / "tests" / "alerts" / "alerts.test.yaml"
RUNBOOKS = helpers.ROOT / "docs" / "runbooks"
RUNBOOK_BASE = "https://github.com/canary-dev/canary-operator/blob/main/docs/runbooks/"
SEVERITIES = {"critical", "warning", "info"}
# Alerts about one rollout name it in their description; those about the operator have no rollout.
ROLLOUT_ALERTS = {
    "CanaryRolloutStuck",
    "CanaryRolledBack",
    "CanaryChecksInconclusive",
    "CanaryPrometheusUnreachable",
}


def alerting_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in alerting_rules()]


def run_promtool(promtool: str, *args: str) -> None:
    completed = subprocess.run(
        [promtool, *args], cwd=helpers.ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    if completed.returncode != 0:
        pytest.fail(f"promtool {' '.join(args)} failed:\n{completed.stdout}{completed.stderr}", pytrace=False)


def test_promtool_accepts_the_rules_file(promtool: str) -> None:
    run_promtool(promtool, "check", "rules", str(ALERTS.relative_to(helpers.ROOT)))


def test_every_alert_fires_and_stays_quiet_exactly_as_its_unit_tests_expect(promtool: str) -> None:
    run_promtool(promtool, "test", "rules", str(UNIT_TESTS.relative_to(helpers.ROOT)))


def test_the_unit_tests_load_the_shipped_rules_file() -> None:
    rule_files = yaml.safe_load(UNIT_TESTS.read_text())["rule_files"]
    assert [(UNIT_TESTS.parent / path).resolve() for path in rule_files] == [ALERTS.resolve()]


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_must_not() -> None:
    cases = [case for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert set(alert_names()) - firing == set(), "alerts never seen firing"
    assert set(alert_names()) - quiet == set(), "alerts never seen staying quiet"
    assert firing | quiet <= set(alert_names()), "unit tests of alerts that do not exist"


def test_alert_names_are_unique() -> None:
    assert len(alert_names()) == len(set(alert_names()))


@pytest.mark.parametrize("rule", alerting_rules(), ids=alert_names())
def test_every_alert_says_how_bad_what_happened_and_where_the_runbook_is(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE}{name}.md"
    assert (RUNBOOKS / f"{name}.md").is_file(), f"docs/runbooks/{name}.md is missing"
    if name in ROLLOUT_ALERTS:
        assert "{{ $labels.namespace }}/{{ $labels.rollout }}" in annotations["description"]


@pytest.mark.parametrize("rule", alerting_rules(), ids=alert_names())
def test_every_alert_reads_only_metrics_that_exist(
    rule: dict[str, Any], unknown_metrics: Callable[[str], set[str]]
) -> None:
    assert unknown_metrics(rule["expr"]) == set()


def test_every_runbook_belongs_to_an_alert_and_is_listed() -> None:
    pages = {page.stem for page in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == set(alert_names())
    index = (RUNBOOKS / "README.md").read_text()
    assert {name for name in alert_names() if f"]({name}.md)" not in index} == set(), "missing from the index"


@pytest.mark.parametrize("name", alert_names())
def test_every_runbook_goes_from_first_look_to_escalation(name: str) -> None:
    text = (RUNBOOKS / f"{name}.md").read_text()
    assert text.startswith(f"# {name}\n")
    assert re.findall(r"^## (.+)$", text, re.MULTILINE)[-1] == "Escalate"
    for section in ("What it looks like", "First look", "Fix"):
        assert f"\n## {section}\n" in text, f"{name}.md has no '{section}' section"
    assert "kubectl" in text, "a runbook starts with a command to run"


def test_the_blocked_alert_names_every_reason_only_a_person_can_clear_and_its_runbook_explains_each() -> None:
    """A reason added to the operator without the alert would leave that rollout stalled in silence."""
    rule = next(rule for rule in alerting_rules() if rule["alert"] == "CanaryRolloutBlocked")
    found = re.search(r'reason=~"([^"]+)"', rule["expr"])
    assert found is not None
    assert set(found.group(1).split("|")) == {reason.value for reason in models.NEEDS_A_PERSON}
    runbook = (RUNBOOKS / "CanaryRolloutBlocked.md").read_text()
    fix = runbook.split("\n## Fix\n", 1)[1]
    assert {r.value for r in models.NEEDS_A_PERSON if f"`{r.value}`" not in fix} == set(), "reasons without a fix"
