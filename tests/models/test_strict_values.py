"""Names and values a hostile or careless tenant could write: refused by the CRD schema with a message,
or, where a schema cannot say it, by the model (the InvalidSpec condition at the first tick)."""

from __future__ import annotations

import copy
from typing import Any

import helpers
import jsonschema
import pydantic
import pytest

from canary_operator import crds, models


def validate(rollout: dict[str, Any]) -> None:
    """The schema as the API server has it (OpenAPI v3.0: draft 4 for exclusiveMinimum)."""
    schema = crds.definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.Draft4Validator(schema).validate(rollout)


def mutated(path: str, value: Any) -> dict[str, Any]:
    rollout = copy.deepcopy(helpers.example_rollout())
    node = rollout["spec"]
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(leaf) if leaf.isdigit() else leaf] = value
    return rollout


def schema_refuses(rollout: dict[str, Any]) -> str:
    with pytest.raises(jsonschema.ValidationError) as refused:
        validate(rollout)
    return str(refused.value.message)


def model_refuses(rollout: dict[str, Any]) -> str:
    with pytest.raises(pydantic.ValidationError) as refused:
        models.parse_spec(rollout["spec"])
    return models.explain(refused.value)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("targetRef.name", "../../other-ns/deployments/victim"),
        ("targetRef.name", "a" * 56),  # a-...-primary would be 64 characters
        ("targetRef.name", "Web"),
        ("targetRef.name", "1web"),  # a Service name starts with a letter
        ("targetRef.name", "web."),
        ("targetRef.name", ".."),
        ("analysis.interval", "9999999999w"),
        ("analysis.interval", "1m" * 17),
        ("analysis.interval", "1.12345s"),
        ("analysis.prometheus.timeout", "-1s"),
        ("steps.1.pause.duration", "99999999d"),
        ("analysis.failureThreshold", 101),
        ("analysis.inconclusiveThreshold", 10**6),
        ("analysis.minRequests", 10**12),
        ("analysis.metrics.0.name", "error rate; drop"),
        ("analysis.metrics.0.name", "x" * 64),
        ("steps", [{"setWeight": 10}] * 101),
    ],
)
def test_the_schema_refuses_names_and_values_beyond_bounds(path: str, value: Any) -> None:
    schema_refuses(mutated(path, value))
    model_refuses(mutated(path, value))


def test_the_longest_target_name_still_fits_its_derived_names() -> None:
    name = "a" * models.TARGET_NAME_MAX_LENGTH
    rollout = mutated("targetRef.name", name)
    validate(rollout)
    models.parse_spec(rollout["spec"])
    assert len(f"{name}-primary") == 63 and len(f"{name}-canary") <= 63


def test_the_rollouts_own_name_is_a_label_value() -> None:
    rollout = mutated("targetRef.name", "web")
    rollout["metadata"]["name"] = "r" * 64
    assert "64" in schema_refuses(rollout) or "long" in schema_refuses(rollout)
    rollout["metadata"]["name"] = "r" * 63
    validate(rollout)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("analysis.prometheus.timeout", "0s", "must be above 0s"),
        ("progressDeadline", "400d", "longer than the maximum of 366d"),
        ("analysis.interval", "0s", "shorter than the minimum of 1s"),
        ("analysis.interval", "2d", "longer than the maximum of 1d"),
        ("steps.1.pause.duration", "99999w", "longer than the maximum of 366d"),
        ("analysis.maxStepExtension", "500d", "longer than the maximum of 366d"),
    ],
)
def test_durations_the_schema_lets_through_are_bounded_by_the_model(path: str, value: str, message: str) -> None:
    rollout = mutated(path, value)
    validate(rollout)  # a pattern cannot say "at most 366d"
    assert message in model_refuses(rollout)


def test_the_largest_durations_the_schema_allows_parse_without_overflow() -> None:
    assert models.parse_duration("99999.999w" * 3) < 1e12  # timedelta holds up to 8.6e13 s


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_infinite_and_nan_limits_are_refused(value: float) -> None:
    assert "finite" in model_refuses(mutated("analysis.metrics.0.max", value))
