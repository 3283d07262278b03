"""
Structural schemas of custom resources: pruning, defaulting and validation, in this order.

This is what makes a CRD's schema bite in a real cluster: unknown fields vanish (or are refused
with ``fieldValidation=Strict``), defaults appear, and a violation is a 422 Invalid with its causes.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from canary_bench.emulation import bodies, errors


def prune(
    value: Any, schema: Mapping[str, Any], *, root: bool = False, path: str = "", unknown: list[str] | None = None
) -> Any:
    """Drop the fields the schema does not know (listed in ``unknown``) and the nulls it does not allow."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        result: bodies.Body = {}
        for key, item in value.items():
            subpath = f"{path}.{key}" if path else key
            if root and key in ("apiVersion", "kind", "metadata"):
                result[key] = item
            elif properties is not None and key in properties:
                if item is not None or properties[key].get("nullable"):
                    result[key] = prune(item, properties[key], path=subpath, unknown=unknown)
            elif isinstance(additional, dict):
                result[key] = prune(item, additional, path=subpath, unknown=unknown)
            elif additional is True:
                # kube-apiserver prunes the value with no schema at all: the key stays, every object inside it
                # is emptied (only x-kubernetes-preserve-unknown-fields keeps a free-form object whole).
                result[key] = _schemaless(item)
            elif preserve:
                result[key] = item
            elif unknown is not None:
                unknown.append(subpath)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"], path=f"{path}[{i}]", unknown=unknown) for i, item in enumerate(value)]
    return value


def _schemaless(value: Any) -> Any:
    """What pruning against no schema leaves of a value: objects emptied, lists of them too, scalars kept."""
    if isinstance(value, dict):
        return {}
    if isinstance(value, list):
        return [_schemaless(item) for item in value]
    return value


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> None:
    if isinstance(value, dict):
        for key, subschema in (schema.get("properties") or {}).items():
            if key not in value and "default" in subschema:
                value[key] = copy.deepcopy(subschema["default"])
            if key in value:
                apply_defaults(value[key], subschema)
        if isinstance(schema.get("additionalProperties"), dict):
            for item in value.values():
                apply_defaults(item, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


_JSON_TYPES: Final[Mapping[str, Callable[[Any], bool]]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def _type_name(value: Any) -> str:
    for name in ("boolean", "integer", "number", "string", "object", "array"):
        if _JSON_TYPES[name](value):
            return name
    return "null"


def validate_schema(value: Any, schema: Mapping[str, Any], path: str = "", *, root: bool = False) -> list[errors.Cause]:
    """Validate against an OpenAPI v3 structural schema (CEL rules and formats are not checked)."""
    field = path or "<root>"
    expected = str(schema.get("type", ""))
    if value is None:
        nullable = schema.get("nullable") or not path
        return (
            []
            if nullable
            else [errors.Cause.invalid(field, None, f'{field} in body must be of type {expected}: "null"')]
        )
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            actual = _type_name(value)
            return [errors.Cause.invalid(field, value, f'{field} in body must be of type int-or-string: "{actual}"')]
    elif expected in _JSON_TYPES and not _JSON_TYPES[expected](value):
        return [
            errors.Cause.invalid(field, value, f'{field} in body must be of type {expected}: "{_type_name(value)}"')
        ]
    causes: list[errors.Cause] = []
    if "enum" in schema and value not in schema["enum"]:
        causes.append(errors.Cause.unsupported(field, value, schema["enum"]))
    if isinstance(value, int | float) and not isinstance(value, bool):
        highest, lowest = schema.get("maximum"), schema.get("minimum")
        if highest is not None and (value > highest or (schema.get("exclusiveMaximum") and value == highest)):
            causes.append(
                errors.Cause.invalid(field, value, f"{field} in body should be less than or equal to {highest}")
            )
        if lowest is not None and (value < lowest or (schema.get("exclusiveMinimum") and value == lowest)):
            causes.append(
                errors.Cause.invalid(field, value, f"{field} in body should be greater than or equal to {lowest}")
            )
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            causes.append(
                errors.Cause("FieldValueTooLong", field, f"Too long: may not be more than {schema['maxLength']}")
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            causes.append(
                errors.Cause.invalid(
                    field, value, f"{field} in body should be at least {schema['minLength']} chars long"
                )
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            causes.append(errors.Cause.invalid(field, value, f"{field} in body should match '{schema['pattern']}'"))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            causes.append(
                errors.Cause(
                    "FieldValueTooMany", field, f"Too many: {len(value)}: must have at most {schema['maxItems']} items"
                )
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            causes.append(
                errors.Cause.invalid(field, value, f"{field} in body should have at least {schema['minItems']} items")
            )
        if isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                causes += validate_schema(item, schema["items"], f"{path}[{index}]")
    if isinstance(value, dict):
        for required in schema.get("required") or []:
            if required not in value:
                causes.append(errors.Cause.required(f"{path}.{required}" if path else required))
        for key, item in value.items():
            if root and key == "metadata" and isinstance(item, dict):
                # A CRD may restrict metadata.name and metadata.generateName, and nothing else of metadata.
                restricted = ((schema.get("properties") or {}).get("metadata") or {}).get("properties") or {}
                for meta_key in ("name", "generateName"):
                    if meta_key in restricted and isinstance(item.get(meta_key), str):
                        causes += validate_schema(item[meta_key], restricted[meta_key], f"metadata.{meta_key}")
                continue
            if root and key in ("apiVersion", "kind"):
                continue
            subschema = (schema.get("properties") or {}).get(key)
            if subschema is None and isinstance(schema.get("additionalProperties"), dict):
                subschema = schema["additionalProperties"]
            if subschema is not None:
                causes += validate_schema(item, subschema, f"{path}.{key}" if path else key)
    for subschema in schema.get("allOf") or []:
        causes += validate_schema(value, subschema, path)
    if schema.get("anyOf") and not any(not validate_schema(value, s, path) for s in schema["anyOf"]):
        causes.append(errors.Cause.invalid(field, value, f"{field} in body must match at least one schema (anyOf)"))
    if schema.get("oneOf") and sum(not validate_schema(value, s, path) for s in schema["oneOf"]) != 1:
        causes.append(errors.Cause.invalid(field, value, f"{field} in body must match exactly one schema (oneOf)"))
    if isinstance(schema.get("not"), dict) and not validate_schema(value, schema["not"], path):
        causes.append(errors.Cause.invalid(field, value, f"{field} in body must not validate the schema (not)"))
    return causes
