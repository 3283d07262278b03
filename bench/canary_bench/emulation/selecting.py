"""
Label and field selectors: which objects a list, a watch or a Deployment's selector sees.

Lists and watches filter by the ``labelSelector`` and ``fieldSelector`` parameters (with the same
400 answers as the API for what it cannot parse); Deployments and Scales carry structured selectors.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

from canary_bench.emulation import errors

_NAME_PART = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
LABEL_KEY = rf"(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?/)?{_NAME_PART}"
LABEL_VALUE = rf"(?:{_NAME_PART})?"


@dataclasses.dataclass(frozen=True)
class LabelRequirement:
    key: str
    operator: Literal["=", "!=", "in", "notin", "exists", "!", ">", "<"]
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        match self.operator:
            case "=" | "in":
                return value is not None and value in self.values
            case "!=" | "notin":
                return value is None or value not in self.values
            case "exists":
                return value is not None
            case "!":
                return value is None
            case ">" | "<":
                try:
                    number, bound = int(value or ""), int(self.values[0])
                except ValueError:
                    return False
                return number > bound if self.operator == ">" else number < bound

    def __str__(self) -> str:
        match self.operator:
            case "exists":
                return self.key
            case "!":
                return f"!{self.key}"
            case "in" | "notin":
                return f"{self.key} {self.operator} ({','.join(self.values)})"
            case _:
                return f"{self.key}{self.operator}{self.values[0]}"


def _split_top_level(text: str) -> list[str]:
    """Split on the commas that are not inside ``in (a,b)`` parentheses."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    return [*terms, current]


def parse_label_selector(text: str) -> tuple[LabelRequirement, ...]:
    requirements: list[LabelRequirement] = []
    for raw in _split_top_level(text):
        term = raw.strip()
        if not term and not text.strip():
            continue
        if m := re.fullmatch(rf"!\s*({LABEL_KEY})", term):
            requirements.append(LabelRequirement(m[1], "!"))
        elif m := re.fullmatch(rf"({LABEL_KEY})\s+(in|notin)\s*\(([^()]*)\)", term):
            values = tuple(v.strip() for v in m[3].split(","))
            if not all(re.fullmatch(LABEL_VALUE, v) for v in values):
                raise errors.bad_request(f"unable to parse requirement: invalid label value in {term!r}")
            requirements.append(LabelRequirement(m[1], "in" if m[2] == "in" else "notin", values))
        elif m := re.fullmatch(rf"({LABEL_KEY})\s*(==|=|!=)\s*({LABEL_VALUE})", term):
            requirements.append(LabelRequirement(m[1], "!=" if m[2] == "!=" else "=", (m[3],)))
        elif m := re.fullmatch(rf"({LABEL_KEY})\s*([<>])\s*(-?\d+)", term):
            requirements.append(LabelRequirement(m[1], ">" if m[2] == ">" else "<", (m[3],)))
        elif re.fullmatch(LABEL_KEY, term):
            requirements.append(LabelRequirement(term, "exists"))
        else:
            raise errors.bad_request(f"unable to parse requirement: found {term!r}, expected a label requirement")
    return tuple(requirements)


def selector_requirements(selector: Mapping[str, Any]) -> tuple[LabelRequirement, ...]:
    """The requirements of a structured selector: ``{matchLabels: ..., matchExpressions: ...}``."""
    requirements = [LabelRequirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    operators: Mapping[str, Literal["in", "notin", "exists", "!"]] = {
        "In": "in",
        "NotIn": "notin",
        "Exists": "exists",
        "DoesNotExist": "!",
    }
    for expression in selector.get("matchExpressions") or []:
        operator = operators.get(expression.get("operator", ""))
        if operator is None:
            raise errors.bad_request(f"{expression.get('operator')!r} is not a valid label selector operator")
        requirements.append(
            LabelRequirement(expression.get("key", ""), operator, tuple(expression.get("values") or ()))
        )
    return tuple(requirements)


# Fields every resource can be selected by, plus the extra ones a few resources support.
_FIELD_LABELS: Final[Mapping[tuple[str, str], frozenset[str]]] = {
    ("", "events"): frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    ("events.k8s.io", "events"): frozenset(
        {
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        }
    ),
    ("", "namespaces"): frozenset({"status.phase"}),
    ("", "secrets"): frozenset({"type"}),
}


@dataclasses.dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: Literal["=", "!="]
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        path = "source.component" if self.field == "source" else self.field
        actual: Any = obj
        for part in path.split("."):
            actual = actual.get(part) if isinstance(actual, Mapping) else None
        text = "" if actual is None else str(actual)
        return (text == self.value) == (self.operator == "=")


def parse_field_selector(text: str, group: str, plural: str) -> tuple[FieldRequirement, ...]:
    supported = {"metadata.name", "metadata.namespace"} | _FIELD_LABELS.get((group, plural), frozenset())
    requirements: list[FieldRequirement] = []
    for term in text.split(","):
        if not term.strip():
            continue
        m = re.fullmatch(r"\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*", term)
        if m is None:
            raise errors.bad_request(f"invalid selector: {term!r}; can't understand {term!r}")
        if m[1] not in supported:
            raise errors.bad_request(f"field label not supported: {m[1]}")
        requirements.append(FieldRequirement(m[1], "!=" if m[2] == "!=" else "=", m[3]))
    return tuple(requirements)


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which objects of a resource a list or a watch sees."""

    namespace: str | None = None
    name: str | None = None
    labels: tuple[LabelRequirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and (meta.get("namespace") or None) != self.namespace:
            return False
        if self.name is not None and meta.get("name") != self.name:
            return False
        labels = meta.get("labels") or {}
        return all(r.matches(labels) for r in self.labels) and all(r.matches(obj) for r in self.fields)


EVERYTHING: Final = Selection()  # all objects of a resource, in all namespaces
