"""The CRD: generated from the models, current, and rejecting bad specs with a specific message."""

from __future__ import annotations

import copy
from typing import Any

import helpers
import jsonschema
import pydantic
import pytest
import yaml

from canary_operator import crds, models

CRD_FILE = helpers.ROOT / "crds" / "canaryrollouts.yaml"


def schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def validate(rollout: dict[str, Any]) -> None:
    """OpenAPI v3.0 schemas are JSON Schema draft 4 in this respect: exclusiveMinimum is a boolean."""
    jsonschema.Draft4Validator(schema()).validate(rollout)


def test_the_checked_in_crd_is_generated_from_the_models() -> None:
    assert CRD_FILE.read_text() == crds.render(), (
        "stale: run `python -m canary_operator.crds > crds/canaryrollouts.yaml`"
    )


def test_the_example_is_accepted_as_is_by_the_schema_and_the_models() -> None:
    rollout = helpers.example_rollout()
    validate(rollout)
    spec = models.parse_spec(rollout["spec"])
    assert [s.set_weight for s in spec.steps] == [10, None, 50, None]
    assert spec.analysis.interval_seconds == 10.0


def test_the_crd_is_structural() -> None:
    text = CRD_FILE.read_text()
    assert "$ref" not in text and "anyOf:\n" not in text.split("metrics:")[0]
    assert "additionalProperties: false" not in text


def mutated(path: str, value: Any) -> dict[str, Any]:
    rollout = copy.deepcopy(helpers.example_rollout())
    node = rollout["spec"]
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is ...:
        del node[int(leaf) if leaf.isdigit() else leaf]
    else:
        node[int(leaf) if leaf.isdigit() else leaf] = value
    return rollout


INVALID = [
    ("steps.0.setWeight", 150, "150 is greater than the maximum of 100", "less than or equal to 100"),
    (
        "steps.1",
        {"setWeight": 20, "pause": {}},
        "is valid under each of",
        "exactly one of setWeight, pause, setHeaderRoute, setCookieRoute",
    ),
    (
        "steps.1",
        {},
        "is not valid under any of the given schemas",
        "exactly one of setWeight, pause, setHeaderRoute, setCookieRoute",
    ),
    ("steps.1.pause.duration", "30 seconds", "does not match", "should match pattern"),
    ("analysis.metrics.0.template", "error-ratio", "is not one of", "Input should be"),
    ("analysis.metrics.1.max", ..., None, None),  # dropping max leaves neither bound on latency
    ("analysis.failureThreshold", 0, "less than the minimum of 1", "greater than or equal to 1"),
    ("targetRef.kind", "StatefulSet", "is not one of", "Input should be 'Deployment'"),
    ("analysis.metrics", [], "should be non-empty", "at least 1 item"),
]


@pytest.mark.parametrize(("path", "value", "schema_says", "model_says"), INVALID, ids=[i[0] for i in INVALID])
def test_an_invalid_spec_is_rejected_by_the_schema_and_explained(
    path: str, value: Any, schema_says: str | None, model_says: str | None
) -> None:
    rollout = mutated(path, value)
    with pytest.raises(jsonschema.ValidationError) as schema_error:
        validate(rollout)
    if schema_says:
        assert schema_says in schema_error.value.message
    with pytest.raises(pydantic.ValidationError) as model_error:
        models.parse_spec(rollout["spec"])
    explained = models.explain(model_error.value)
    assert explained.startswith("spec.")
    if model_says:
        assert model_says in explained


def test_the_operator_names_the_field_and_the_problem() -> None:
    rollout = mutated(
        "analysis.metrics.0", {"name": "custom", "query": "sum(rate(x{pod=~'{{ pods }}'}[1m]))", "max": 1}
    )
    with pytest.raises(pydantic.ValidationError) as error:
        models.parse_spec(rollout["spec"])
    assert models.explain(error.value) == (
        "spec.analysis.metrics.0: metric 'custom': unknown query variable(s) pods;"
        " known: canary, interval, namespace, pod, primary, target, workload"
    )


def test_durations_parse_like_kubernetes_durations() -> None:
    assert models.parse_duration("1m30s") == 90.0
    assert models.parse_duration("500ms") == 0.5
    with pytest.raises(ValueError, match="not a duration"):
        models.parse_duration("10")


def test_a_latency_comparison_against_the_primary_p99_needs_an_absolute_floor() -> None:
    relative = {"name": "latency-vs-primary", "template": "latency-p99", "compare": "primary", "maxRatio": 2}
    with pytest.raises(pydantic.ValidationError) as error:
        models.parse_spec(mutated("analysis.metrics.1", relative)["spec"])
    assert "against the primary's p99 (no slowerThan) needs maxIncrease > 0" in models.explain(error.value)
    spec = models.parse_spec(mutated("analysis.metrics.1", {**relative, "maxIncrease": 0.25})["spec"])
    assert spec.analysis.metrics[1].slower_than is None
