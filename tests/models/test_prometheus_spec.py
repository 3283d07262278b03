"""analysis.prometheus: every field optional (operator defaults), addresses and headers strict at admission."""

from __future__ import annotations

import copy
from typing import Any

import helpers
import jsonschema
import pydantic
import pytest
import yaml

from canary_operator import models


def validate(rollout: dict[str, Any]) -> None:
    """The CRD's schema, as the API server applies it (OpenAPI v3.0: draft 4's boolean exclusiveMinimum)."""
    crd = yaml.safe_load((helpers.ROOT / "crds" / "canaryrollouts.yaml").read_text())
    jsonschema.Draft4Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]).validate(rollout)


def with_prometheus(prometheus: dict[str, Any] | None) -> dict[str, Any]:
    rollout = copy.deepcopy(helpers.example_rollout())
    if prometheus is None:
        del rollout["spec"]["analysis"]["prometheus"]
    else:
        rollout["spec"]["analysis"]["prometheus"] = prometheus
    return rollout


def test_a_rollout_may_leave_prometheus_to_the_operator() -> None:
    rollout = with_prometheus(None)
    validate(rollout)
    spec = models.parse_spec(rollout["spec"])
    assert spec.analysis.prometheus == models.PrometheusSpec()
    assert spec.analysis.prometheus.address is None and spec.analysis.prometheus.timeout is None


def test_every_access_setting_is_accepted() -> None:
    prometheus = {
        "address": "https://mimir.example.com/prometheus/",
        "timeout": "20s",
        "secretRef": {"name": "prom-reader"},
        "insecureSkipVerify": False,
        "headers": {"X-Scope-OrgID": "team-a"},
    }
    rollout = with_prometheus(prometheus)
    validate(rollout)
    parsed = models.parse_spec(rollout["spec"]).analysis.prometheus
    assert parsed.address == "https://mimir.example.com/prometheus"  # without the trailing slash
    assert parsed.secret_ref == models.SecretReference(name="prom-reader")


BAD = [
    ({"address": "http://admin:hunter2@prometheus:9090"}, True, "must not hold credentials"),
    ({"address": "ftp://prometheus:9090"}, True, "must be an http:// or https:// URL"),
    ({"address": "http://prometheus:9090/api?x=1"}, True, "without ?query or #fragment"),
    ({"address": "http://prometheus:9090/a/../admin"}, False, "without percent-escapes, backslashes or . and .."),
    ({"address": "http://prometheus:9090/%2e%2e/admin"}, True, "without percent-escapes"),
    ({"address": "http://prometheus:99999"}, False, "has an invalid port"),
    ({"timeout": "0s"}, False, "must be above 0s"),
    ({"secretRef": {"name": "../other-namespace"}}, True, "should match pattern"),
    ({"headers": {"Authorization": "Bearer x"}}, False, "is set by the operator"),
    ({"headers": {"X Scope": "a"}}, False, "is not an HTTP token"),
    ({"headers": {"X-Scope-OrgID": "a\r\nX-Injected: 1"}}, False, "must be printable ASCII"),
    ({"headers": {f"X-{i}": "a" for i in range(17)}}, True, "at most 16"),
]


@pytest.mark.parametrize(("prometheus", "by_schema", "words"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_access_setting_is_refused_with_a_message_that_quotes_no_secret(
    prometheus: dict[str, Any], by_schema: bool, words: str
) -> None:
    rollout = with_prometheus(prometheus)
    if by_schema:
        with pytest.raises(jsonschema.ValidationError):
            validate(rollout)
    with pytest.raises(pydantic.ValidationError) as error:
        models.parse_spec(rollout["spec"])
    explained = models.explain(error.value)
    assert explained.startswith("spec.analysis.prometheus.")
    assert words in explained
    assert "hunter2" not in explained
