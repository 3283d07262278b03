"""The CustomResourceDefinition, generated from the pydantic models.

Kubernetes wants a *structural* OpenAPI v3 schema: no ``$ref``, no ``anyOf``
with nulls, no ``additionalProperties`` beside ``properties``, and free-form
objects marked ``x-kubernetes-preserve-unknown-fields`` (pruning would empty them). pydantic's JSON
schema is close; this module folds it into that shape and adds what only
Kubernetes knows about (printer columns, the status subresource). Rules that
span several fields ("a step is either setWeight or pause") are expressed as
``oneOf``/``anyOf`` of ``required`` lists, which both the API server and plain
``jsonschema`` enforce.

``python -m canary_operator.crds > crds/canaryrollouts.yaml`` regenerates the file;
a test fails when the checked-in file is stale.
"""

from __future__ import annotations

import sys
from typing import Any

import pydantic
import yaml

from canary_operator import models

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Step", "type": "string", "jsonPath": ".status.step"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.weight"},
    {"name": "Last verdict", "type": "string", "jsonPath": ".status.lastVerdict"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Revision", "type": "string", "jsonPath": ".status.canaryRevision", "priority": 1},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
]

# Cross-field rules, keyed by the pydantic model name they belong to.
_EXTRA_RULES: dict[str, dict[str, Any]] = {
    "Step": {
        "oneOf": [
            {"required": ["setWeight"]},
            {"required": ["pause"]},
            {"required": ["setHeaderRoute"]},
            {"required": ["setCookieRoute"]},
        ]
    },
    "TrafficRouting": {
        "oneOf": [
            {"required": ["replicas"]},
            {"required": ["gatewayAPI"]},
            {"required": ["istio"]},
            {"required": ["nginx"]},
        ]
    },
    "StringMatch": {"oneOf": [{"required": ["exact"]}, {"required": ["prefix"]}, {"required": ["regex"]}]},
    "Metric": {
        "oneOf": [{"required": ["template"]}, {"required": ["query"]}],
        "anyOf": [{"required": ["max"]}, {"required": ["min"]}, {"required": ["compare"]}],
    },
}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Inline references and drop what a structural schema does not allow."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        inlined = _structural(defs[name], defs)
        inlined = {**inlined, **_EXTRA_RULES.get(name, {})}
        if "description" in node:
            inlined["description"] = node["description"]
        return inlined
    if "anyOf" in node and any(option.get("type") == "null" for option in node["anyOf"]):
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
        if len(options) == 1:
            return _structural({**options[0], **rest}, defs)
        return _structural({**rest, "anyOf": options}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "default" and value in (None, {}, []):
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "additionalProperties" and value is True:
            # A free-form object (a pod template, a spec): kube-apiserver prunes what ``additionalProperties: true``
            # holds against no schema, emptying every object inside it; only this keeps it whole.
            out["x-kubernetes-preserve-unknown-fields"] = True
            continue
        if key == "const":  # Kubernetes knows enum, not const
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # OpenAPI v3.0 (and so Kubernetes) spells "> x" as minimum: x plus exclusiveMinimum: true.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "properties":
            out[key] = {prop: _structural(schema, defs) for prop, schema in value.items()}
        else:
            out[key] = _structural(value, defs)
    return out


def schema_of(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return dict(_structural(raw, raw.get("$defs", {})))


def definition() -> dict[str, Any]:
    spec_schema = schema_of(models.CanaryRolloutSpec)
    status_schema = schema_of(models.CanaryRolloutStatus)
    # Conditions and records are written by the operator only; leave them open for forward compatibility.
    status_schema["x-kubernetes-preserve-unknown-fields"] = True
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{models.PLURAL}.{models.GROUP}"},
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": models.KIND,
                "listKind": f"{models.KIND}List",
                "plural": models.PLURAL,
                "singular": models.KIND.lower(),
                "shortNames": ["canary", "canaries"],
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                # The only metadata a CRD may restrict: the name, a label value of the arms.
                                "metadata": {
                                    "type": "object",
                                    "properties": {
                                        "name": {
                                            "type": "string",
                                            "maxLength": models.DNS_LABEL_MAX_LENGTH,
                                            "pattern": models.ROLLOUT_NAME_PATTERN,
                                        }
                                    },
                                },
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `python -m canary_operator.crds` from canary_operator/models.py. Do not edit.\n"
    return header + yaml.safe_dump(definition(), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
