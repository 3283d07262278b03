"""
Server-side Tables for ``kubectl get``: printer columns, the JSONPath they use, and rendering.

kubectl asks the server for a Table (``Accept: ...;as=Table``) and prints it as given, so the
columns of ``kubectl get`` are the server's: those of a CRD come from its additionalPrinterColumns,
those of the built-in kinds are known here.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from canary_bench.emulation import bodies, selecting, times

# JSONPath for printer columns: `.status.phase`, `.spec.containers[0].image`,
# `.status.conditions[?(@.type=="Ready")].status`, `.metadata.labels.app\.kubernetes\.io/name`.
_FILTER = re.compile(r"\?\(\s*@((?:\.[^.\s=!<>)]+)*)\s*(?:(==|!=)\s*(.+?))?\s*\)")


def jsonpath(obj: Any, expression: str) -> list[Any]:
    expression = expression.strip()
    if expression.startswith("{") and expression.endswith("}"):
        expression = expression[1:-1].strip()
    expression = expression.removeprefix("$")
    values: list[Any] = [obj]
    for step in _jsonpath_steps(expression):
        found: list[Any] = []
        for value in values:
            found.extend(step(value))
        values = found
    return values


def _jsonpath_steps(expression: str) -> Iterator[Callable[[Any], list[Any]]]:
    i = 0
    while i < len(expression):
        if expression[i] == ".":
            i += 1
            key = ""
            while i < len(expression) and expression[i] not in ".[":
                if expression[i] == "\\" and i + 1 < len(expression):
                    i += 1
                key += expression[i]
                i += 1
            yield _all_step if key == "*" else _key_step(key)
        elif expression[i] == "[":
            end = expression.find(")]", i) + 1 if expression.startswith("[?", i) else expression.find("]", i)
            if end <= i:
                raise ValueError(f"unterminated bracket in {expression!r}")
            inner = expression[i + 1 : end].strip()
            i = end + 1
            if inner == "*":
                yield _all_step
            elif inner.startswith("?"):
                yield _filter_step(inner)
            elif inner[:1] in "'\"":
                yield _key_step(inner[1:-1])
            else:
                yield _index_step(int(inner))
        else:
            raise ValueError(f"unsupported JSONPath: {expression!r}")


def _key_step(key: str) -> Callable[[Any], list[Any]]:
    return lambda value: [value[key]] if isinstance(value, dict) and key in value else []


def _index_step(index: int) -> Callable[[Any], list[Any]]:
    return lambda value: [value[index]] if isinstance(value, list) and -len(value) <= index < len(value) else []


def _all_step(value: Any) -> list[Any]:
    return list(value.values()) if isinstance(value, dict) else list(value) if isinstance(value, list) else []


def _filter_step(inner: str) -> Callable[[Any], list[Any]]:
    m = _FILTER.fullmatch(inner)
    if m is None:
        raise ValueError(f"unsupported JSONPath filter: {inner!r}")
    path, operator, literal = m[1], m[2], m[3]
    expected = json.loads(literal.replace("'", '"')) if literal is not None else None

    def matches(item: Any) -> bool:
        found = jsonpath(item, path) if path else [item]
        if operator is None:
            return bool(found)
        return bool(found) and (found[0] == expected) == (operator == "==")

    return lambda value: [item for item in value if matches(item)] if isinstance(value, list) else []


@dataclasses.dataclass(frozen=True)
class PrinterColumn:
    """A column of ``kubectl get``: a CRD's additionalPrinterColumn or a built-in kind's column."""

    name: str
    type: str  # string, integer, number, boolean, date
    json_path: str = ""
    priority: int = 0
    description: str = ""
    format: str = ""
    compute: Callable[[bodies.Body], Any] | None = None  # for the built-in columns that are not one path

    @classmethod
    def from_crd(cls, spec: Mapping[str, Any]) -> PrinterColumn:
        return cls(
            name=spec["name"],
            type=spec.get("type", "string"),
            json_path=spec["jsonPath"],
            priority=int(spec.get("priority", 0)),
            description=spec.get("description", ""),
            format=spec.get("format", ""),
        )

    def definition(self) -> bodies.Body:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }

    def cell(self, obj: bodies.Body, moment: datetime.datetime) -> Any:
        if self.compute is not None:
            value = self.compute(obj)
        else:
            found = jsonpath(obj, self.json_path)
            value = found[0] if found else None
        # The same typing as the API server's CRD table convertor: mismatches print as <none>.
        match self.type, value:
            case _, None:
                return None
            case "date", str():
                moment_of_value = times.parse_time(value)
                return (
                    times.human_duration((moment - moment_of_value).total_seconds()) if moment_of_value else "<invalid>"
                )
            case "integer", int() | float() if not isinstance(value, bool):
                return int(value)
            case "number", int() | float() if not isinstance(value, bool):
                return value
            case "boolean", bool():
                return value
            case "string", str():
                return value
            case "string", _ if self.compute is not None:
                return str(value)
        return None


AGE_COLUMN: Final = PrinterColumn(
    "Age",
    "date",
    ".metadata.creationTimestamp",
    description="CreationTimestamp is a timestamp representing the server time when this object was created.",
)


def _service_ports(obj: bodies.Body) -> str:
    ports = [
        f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
        for p in bodies.resolve(obj, "spec", "ports") or []
    ]
    return ",".join(ports) or "<none>"


def _event_object(obj: bodies.Body) -> str:
    ref = obj.get("involvedObject") or obj.get("regarding") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def _containers(obj: bodies.Body, field: str) -> str:
    return ",".join(str(c.get(field, "")) for c in bodies.resolve(obj, "spec", "template", "spec", "containers") or [])


_BUILTIN_COLUMNS: Final[Mapping[tuple[str, str], tuple[PrinterColumn, ...]]] = {
    ("apps", "deployments"): (
        PrinterColumn(
            "Ready",
            "string",
            compute=lambda o: (
                f"{bodies.resolve(o, 'status', 'readyReplicas') or 0}/{bodies.resolve(o, 'spec', 'replicas') or 0}"
            ),
        ),
        PrinterColumn("Up-to-date", "integer", compute=lambda o: bodies.resolve(o, "status", "updatedReplicas") or 0),
        PrinterColumn("Available", "integer", compute=lambda o: bodies.resolve(o, "status", "availableReplicas") or 0),
        AGE_COLUMN,
        PrinterColumn("Containers", "string", priority=1, compute=lambda o: _containers(o, "name")),
        PrinterColumn("Images", "string", priority=1, compute=lambda o: _containers(o, "image")),
        PrinterColumn(
            "Selector",
            "string",
            priority=1,
            compute=lambda o: ",".join(
                str(r) for r in selecting.selector_requirements(bodies.resolve(o, "spec", "selector") or {})
            ),
        ),
    ),
    ("", "services"): (
        PrinterColumn("Type", "string", ".spec.type"),
        PrinterColumn("Cluster-IP", "string", ".spec.clusterIP"),
        PrinterColumn(
            "External-IP",
            "string",
            compute=lambda o: ",".join(bodies.resolve(o, "spec", "externalIPs") or []) or "<none>",
        ),
        PrinterColumn("Port(s)", "string", compute=_service_ports),
        AGE_COLUMN,
        PrinterColumn(
            "Selector",
            "string",
            priority=1,
            compute=lambda o: (
                ",".join(f"{k}={v}" for k, v in (bodies.resolve(o, "spec", "selector") or {}).items()) or "<none>"
            ),
        ),
    ),
    ("", "namespaces"): (PrinterColumn("Status", "string", ".status.phase"), AGE_COLUMN),
    ("", "events"): (
        PrinterColumn(
            "Last Seen",
            "date",
            compute=lambda o: (
                o.get("lastTimestamp") or o.get("eventTime") or bodies.resolve(o, "metadata", "creationTimestamp")
            ),
        ),
        PrinterColumn("Type", "string", ".type"),
        PrinterColumn("Reason", "string", ".reason"),
        PrinterColumn("Object", "string", compute=_event_object),
        PrinterColumn("Message", "string", ".message"),
    ),
    ("events.k8s.io", "events"): (
        PrinterColumn(
            "Last Seen",
            "date",
            compute=lambda o: (
                o.get("deprecatedLastTimestamp")
                or o.get("eventTime")
                or bodies.resolve(o, "metadata", "creationTimestamp")
            ),
        ),
        PrinterColumn("Type", "string", ".type"),
        PrinterColumn("Reason", "string", ".reason"),
        PrinterColumn("Object", "string", compute=_event_object),
        PrinterColumn("Message", "string", ".note"),
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"): (
        PrinterColumn("Created At", "string", ".metadata.creationTimestamp"),
    ),
}


def builtin_columns(group: str, plural: str) -> tuple[PrinterColumn, ...]:
    """The columns of a built-in kind; any other kind shows its age only."""
    return _BUILTIN_COLUMNS.get((group, plural)) or (AGE_COLUMN,)


def render(
    objs: Sequence[bodies.Body], columns: Sequence[PrinterColumn], *, include: str, resource_version: str
) -> bodies.Body:
    """A ``meta.k8s.io/v1`` Table: the name, then ``columns``; rows carry the object as ``include`` asks."""
    moment = times.now()
    rows = []
    for obj in objs:
        row: bodies.Body = {"cells": [bodies.resolve(obj, "metadata", "name")] + [c.cell(obj, moment) for c in columns]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata", {}),
            }
        rows.append(row)
    name = PrinterColumn(
        "Name",
        "string",
        format="name",
        description=("Name must be unique within a namespace. Is required when creating resources."),
    )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [c.definition() for c in (name, *columns)],
        "rows": rows,
    }
