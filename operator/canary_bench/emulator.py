"""
A Kubernetes API emulator faithful enough for the operator, Kopf and kubectl.

No kube-apiserver can run on the build machines, and raw ``kmock.KubernetesEmulator``
differs from the real API exactly where an operator depends on it: resource versions and
optimistic concurrency, generations, the status subresource, strategic merge patches,
selectors, watch resumption, Tables for kubectl (the gaps are listed in
``/work/shared/reference/test-environment.md``). :class:`FidelityEmulator` closes them.

It stays a kmock emulator served by ``kmock.Server``: its API serving is a kmock fallback
reaction, so anything a test declares with the kmock DSL still wins, e.g. fault injection
with ``emulator['patch', kmock.resource('apps/v1/deployments')] << 500``.

Each behaviour follows the documented API semantics; where the emulator is knowingly
simpler than a real cluster, :class:`FidelityEmulator` says so.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import dataclasses
import datetime
import itertools
import json
import random
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal

import aiohttp.web
import attrs
import kmock

# kmock is pinned to 0.8: its path parser (to detect the paths it cannot parse) and Response are private.
from kmock._internal import parsing as kmock_parsing
from kmock._internal import rendering as kmock_rendering

Body = dict[str, Any]
ObjectKey = tuple[kmock.resource, str | None, str]
PatchType = Literal["merge", "json", "strategic"]

JSON_HEADERS: Final = {"Content-Type": "application/json"}
ALL_VERBS: Final = frozenset({"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"})
PATCH_TYPES: Final[Mapping[str, PatchType]] = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
}

# Groups served by the API server itself. Everything else is a custom resource in a real
# cluster (even gateway.networking.k8s.io): no strategic merge patch for those.
BUILTIN_GROUPS: Final = frozenset(
    {
        "",
        "apps",
        "batch",
        "autoscaling",
        "policy",
        "events.k8s.io",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "storage.k8s.io",
        "scheduling.k8s.io",
        "node.k8s.io",
        "certificates.k8s.io",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "resource.k8s.io",
    }
)

NAMESPACES: Final = kmock.resource("", "v1", "namespaces")
CRDS: Final = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")


# --------------------------------------------------------------------------------------------
# Errors: every failure is answered as a v1 Status, as the real API server does.
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """A failed API call, rendered as a ``v1 Status`` with the same code and reason as the real API."""

    def __init__(self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    def as_status(self) -> Body:
        status: Body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


class _Expired(Exception):
    """A watch asked for changes older than the emulator still remembers (410 Gone)."""


@dataclasses.dataclass(frozen=True)
class Cause:
    """One field error of a 422 Invalid answer, as in ``details.causes`` of the real API."""

    reason: str  # FieldValueRequired, FieldValueInvalid, ...
    field: str
    message: str

    @classmethod
    def required(cls, field: str, detail: str = "") -> Cause:
        return cls("FieldValueRequired", field, "Required value" + (f": {detail}" if detail else ""))

    @classmethod
    def invalid(cls, field: str, value: Any, detail: str) -> Cause:
        return cls("FieldValueInvalid", field, f"Invalid value: {json.dumps(value)}: {detail}")

    @classmethod
    def forbidden(cls, field: str, detail: str) -> Cause:
        return cls("FieldValueForbidden", field, f"Forbidden: {detail}")

    @classmethod
    def unsupported(cls, field: str, value: Any, allowed: Iterable[Any]) -> Cause:
        supported = ", ".join(json.dumps(v) for v in allowed)
        return cls(
            "FieldValueNotSupported", field, f"Unsupported value: {json.dumps(value)}: supported values: {supported}"
        )


# --------------------------------------------------------------------------------------------
# Time: RFC 3339 timestamps with second precision, and kubectl's human-readable ages.
# --------------------------------------------------------------------------------------------


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime.datetime | None:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def human_duration(seconds: float) -> str:
    """The age format of ``kubectl get`` (k8s.io/apimachinery/pkg/util/duration.HumanDuration)."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        return f"{minutes}m{secs % 60}s" if secs % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


# --------------------------------------------------------------------------------------------
# URLs of the resource API.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Route:
    """A resource URL: ``/api/v1/namespaces/shop/services/web`` or ``/apis/apps/v1/.../scale``."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    @property
    def resource(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)


def parse_route(path: str) -> Route | None:
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    # /api/v1/namespaces/NS/status is the namespace's own subresource, not a resource "status".
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in {"status", "finalize"}):
        namespace, rest = rest[1], rest[2:]
    plural, name, subresource = rest[0], (rest[1] if len(rest) > 1 else None), "/".join(rest[2:]) or None
    return Route(group, version, plural, namespace, name, subresource)


# --------------------------------------------------------------------------------------------
# Label and field selectors.
# --------------------------------------------------------------------------------------------

_NAME_PART = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_KEY = rf"(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?/)?{_NAME_PART}"
_LABEL_VALUE = rf"(?:{_NAME_PART})?"


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
        if m := re.fullmatch(rf"!\s*({_LABEL_KEY})", term):
            requirements.append(LabelRequirement(m[1], "!"))
        elif m := re.fullmatch(rf"({_LABEL_KEY})\s+(in|notin)\s*\(([^()]*)\)", term):
            values = tuple(v.strip() for v in m[3].split(","))
            if not all(re.fullmatch(_LABEL_VALUE, v) for v in values):
                raise bad_request(f"unable to parse requirement: invalid label value in {term!r}")
            requirements.append(LabelRequirement(m[1], "in" if m[2] == "in" else "notin", values))
        elif m := re.fullmatch(rf"({_LABEL_KEY})\s*(==|=|!=)\s*({_LABEL_VALUE})", term):
            requirements.append(LabelRequirement(m[1], "!=" if m[2] == "!=" else "=", (m[3],)))
        elif m := re.fullmatch(rf"({_LABEL_KEY})\s*([<>])\s*(-?\d+)", term):
            requirements.append(LabelRequirement(m[1], ">" if m[2] == ">" else "<", (m[3],)))
        elif re.fullmatch(_LABEL_KEY, term):
            requirements.append(LabelRequirement(term, "exists"))
        else:
            raise bad_request(f"unable to parse requirement: found {term!r}, expected a label requirement")
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
            raise bad_request(f"{expression.get('operator')!r} is not a valid label selector operator")
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
            raise bad_request(f"invalid selector: {term!r}; can't understand {term!r}")
        if m[1] not in supported:
            raise bad_request(f"field label not supported: {m[1]}")
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


# --------------------------------------------------------------------------------------------
# Patches: JSON merge (RFC 7386), JSON patch (RFC 6902), strategic merge (built-in kinds).
# --------------------------------------------------------------------------------------------


class PatchError(Exception):
    """A patch that cannot be applied; the API answers 422 for these (Kopf relies on it)."""


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path.split("/")[1:]]


def _index(container: list[Any], token: str, *, adding: bool = False) -> int:
    if adding and token == "-":
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise PatchError(f"invalid array index: {token!r}")
    index = int(token)
    if index > len(container) - (0 if adding else 1):
        raise PatchError(f"array index out of bounds: {index}")
    return index


def _resolve(doc: Any, tokens: Sequence[str], path: str) -> Any:
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(doc, token)]
        else:
            raise PatchError(f"missing value at {path}")
    return doc


def json_patch(doc: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    root: Any = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict):
            raise PatchError(f"invalid operation: {operation!r}")
        op, path = operation.get("op"), operation.get("path")
        tokens = _pointer(path)
        if op == "test":
            if _resolve(root, tokens, str(path)) != operation.get("value"):
                raise PatchError(f"testing value {path} failed: test failed")
            continue
        if op in ("move", "copy"):
            source_tokens = _pointer(operation.get("from"))
            value = copy.deepcopy(_resolve(root, source_tokens, str(operation.get("from"))))
            if op == "move":
                root = _remove(root, source_tokens, str(operation.get("from")))
            root = _add(root, tokens, value, str(path))
        elif op == "add":
            if "value" not in operation:
                raise PatchError(f"missing value for add at {path}")
            root = _add(root, tokens, copy.deepcopy(operation["value"]), str(path))
        elif op == "remove":
            root = _remove(root, tokens, str(path))
        elif op == "replace":
            if "value" not in operation:
                raise PatchError(f"missing value for replace at {path}")
            root = _remove(root, tokens, str(path))
            root = _add(root, tokens, copy.deepcopy(operation["value"]), str(path))
        else:
            raise PatchError(f"unexpected operation: {op!r}")
    return root


def _add(root: Any, tokens: Sequence[str], value: Any, path: str) -> Any:
    if not tokens:
        return value
    parent = _resolve(root, tokens[:-1], path)
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], adding=True), value)
    else:
        raise PatchError(f"missing value at {path}")
    return root


def _remove(root: Any, tokens: Sequence[str], path: str) -> Any:
    if not tokens:
        return None
    parent = _resolve(root, tokens[:-1], path)
    if isinstance(parent, dict) and tokens[-1] in parent:
        del parent[tokens[-1]]
    elif isinstance(parent, list):
        del parent[_index(parent, tokens[-1])]
    else:
        raise PatchError(f"missing value at {path}")
    return root


# The patchMergeKey of the list fields of the built-in kinds (k8s.io/api struct tags).
_MERGE_KEYS: Final[Mapping[str, str]] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "conditions": "type",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "readinessGates": "conditionType",
}
_CONTAINER_LISTS: Final = frozenset({"containers", "initContainers", "ephemeralContainers"})
_MERGED_SCALAR_LISTS: Final = frozenset({"finalizers"})
_DELETE: Final = object()


def _merge_key(field: str, path: tuple[str, ...]) -> str | None:
    if field == "ports":  # containers merge ports by containerPort, services by port
        return "containerPort" if path and path[-1] in _CONTAINER_LISTS else "port"
    return _MERGE_KEYS.get(field)


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def strategic_merge(original: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Apply a strategic merge patch the way the API server does for the built-in kinds."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives(patch)
    if directive == "delete":
        return _DELETE
    result = dict(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, key, path)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value, (*path, key))
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/") and isinstance(result.get(key.split("/", 1)[1]), list):
            field = key.split("/", 1)[1]
            result[field] = [item for item in result[field] if item not in value]
        elif key.startswith("$setElementOrder/") and isinstance(result.get(key.split("/", 1)[1]), list):
            field = key.split("/", 1)[1]
            result[field] = _reorder(result[field], value, _merge_key(field, path))
    if isinstance(patch.get("$retainKeys"), list):
        result = {k: v for k, v in result.items() if k in patch["$retainKeys"]}
    return result


def _merge_list(original: Any, patch: list[Any], field: str, path: tuple[str, ...]) -> list[Any]:
    current = list(original) if isinstance(original, list) else []
    key = _merge_key(field, path)
    if key is None or not all(isinstance(item, dict) for item in patch):
        if field in _MERGED_SCALAR_LISTS and key is None:
            return current + [item for item in patch if item not in current]
        return _strip_directives(patch)  # type: ignore[no-any-return]
    if any(item.get("$patch") == "replace" for item in patch):
        return [_strip_directives(item) for item in patch if "$patch" not in item]
    for item in patch:
        positions = [
            i for i, existing in enumerate(current) if isinstance(existing, dict) and existing.get(key) == item.get(key)
        ]
        if item.get("$patch") == "delete":
            current = [existing for i, existing in enumerate(current) if i not in positions]
        elif positions:
            current[positions[0]] = strategic_merge(current[positions[0]], item, (*path, field))
        else:
            current.append(_strip_directives(item))
    return current


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def identity(item: Any) -> Any:
        return item.get(key) if key is not None and isinstance(item, dict) else item

    wanted = [identity(item) for item in order]
    ranked = sorted(
        range(len(items)),
        key=lambda i: (wanted.index(identity(items[i])) if identity(items[i]) in wanted else len(wanted), i),
    )
    return [items[i] for i in ranked]


# --------------------------------------------------------------------------------------------
# JSONPath for printer columns: `.status.phase`, `.spec.containers[0].image`,
# `.status.conditions[?(@.type=="Ready")].status`, `.metadata.labels.app\.kubernetes\.io/name`.
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Server-side Tables for `kubectl get`.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PrinterColumn:
    """A column of ``kubectl get``: a CRD's additionalPrinterColumn or a built-in kind's column."""

    name: str
    type: str  # string, integer, number, boolean, date
    json_path: str = ""
    priority: int = 0
    description: str = ""
    format: str = ""
    compute: Callable[[Body], Any] | None = None  # for the built-in columns that are not one path

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

    def definition(self) -> Body:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }

    def cell(self, obj: Body, moment: datetime.datetime) -> Any:
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
                moment_of_value = parse_time(value)
                return human_duration((moment - moment_of_value).total_seconds()) if moment_of_value else "<invalid>"
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


def _get(obj: Any, *path: str | int) -> Any:
    for part in path:
        if isinstance(part, int):
            obj = obj[part] if isinstance(obj, list) and len(obj) > part else None
        else:
            obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _service_ports(obj: Body) -> str:
    ports = [
        f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
        for p in _get(obj, "spec", "ports") or []
    ]
    return ",".join(ports) or "<none>"


def _event_object(obj: Body) -> str:
    ref = obj.get("involvedObject") or obj.get("regarding") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def _containers(obj: Body, field: str) -> str:
    return ",".join(str(c.get(field, "")) for c in _get(obj, "spec", "template", "spec", "containers") or [])


_BUILTIN_COLUMNS: Final[Mapping[tuple[str, str], tuple[PrinterColumn, ...]]] = {
    ("apps", "deployments"): (
        PrinterColumn(
            "Ready",
            "string",
            compute=lambda o: f"{_get(o, 'status', 'readyReplicas') or 0}/{_get(o, 'spec', 'replicas') or 0}",
        ),
        PrinterColumn("Up-to-date", "integer", compute=lambda o: _get(o, "status", "updatedReplicas") or 0),
        PrinterColumn("Available", "integer", compute=lambda o: _get(o, "status", "availableReplicas") or 0),
        AGE_COLUMN,
        PrinterColumn("Containers", "string", priority=1, compute=lambda o: _containers(o, "name")),
        PrinterColumn("Images", "string", priority=1, compute=lambda o: _containers(o, "image")),
        PrinterColumn(
            "Selector",
            "string",
            priority=1,
            compute=lambda o: ",".join(str(r) for r in selector_requirements(_get(o, "spec", "selector") or {})),
        ),
    ),
    ("", "services"): (
        PrinterColumn("Type", "string", ".spec.type"),
        PrinterColumn("Cluster-IP", "string", ".spec.clusterIP"),
        PrinterColumn(
            "External-IP", "string", compute=lambda o: ",".join(_get(o, "spec", "externalIPs") or []) or "<none>"
        ),
        PrinterColumn("Port(s)", "string", compute=_service_ports),
        AGE_COLUMN,
        PrinterColumn(
            "Selector",
            "string",
            priority=1,
            compute=lambda o: ",".join(f"{k}={v}" for k, v in (_get(o, "spec", "selector") or {}).items()) or "<none>",
        ),
    ),
    ("", "namespaces"): (PrinterColumn("Status", "string", ".status.phase"), AGE_COLUMN),
    ("", "events"): (
        PrinterColumn(
            "Last Seen",
            "date",
            compute=lambda o: o.get("lastTimestamp") or o.get("eventTime") or _get(o, "metadata", "creationTimestamp"),
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
                o.get("deprecatedLastTimestamp") or o.get("eventTime") or _get(o, "metadata", "creationTimestamp")
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


# --------------------------------------------------------------------------------------------
# Structural schemas of custom resources: pruning, defaulting and validation, in this order.
# --------------------------------------------------------------------------------------------


def prune(
    value: Any, schema: Mapping[str, Any], *, root: bool = False, path: str = "", unknown: list[str] | None = None
) -> Any:
    """Drop the fields the schema does not know (listed in ``unknown``) and the nulls it does not allow."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        result: Body = {}
        for key, item in value.items():
            subpath = f"{path}.{key}" if path else key
            if root and key in ("apiVersion", "kind", "metadata"):
                result[key] = item
            elif properties is not None and key in properties:
                if item is not None or properties[key].get("nullable"):
                    result[key] = prune(item, properties[key], path=subpath, unknown=unknown)
            elif isinstance(additional, dict):
                result[key] = prune(item, additional, path=subpath, unknown=unknown)
            elif additional is True or preserve:
                result[key] = item
            elif unknown is not None:
                unknown.append(subpath)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"], path=f"{path}[{i}]", unknown=unknown) for i, item in enumerate(value)]
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


def validate_schema(value: Any, schema: Mapping[str, Any], path: str = "", *, root: bool = False) -> list[Cause]:
    """Validate against an OpenAPI v3 structural schema (CEL rules and formats are not checked)."""
    field = path or "<root>"
    expected = str(schema.get("type", ""))
    if value is None:
        nullable = schema.get("nullable") or not path
        return [] if nullable else [Cause.invalid(field, None, f'{field} in body must be of type {expected}: "null"')]
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            actual = _type_name(value)
            return [Cause.invalid(field, value, f'{field} in body must be of type int-or-string: "{actual}"')]
    elif expected in _JSON_TYPES and not _JSON_TYPES[expected](value):
        return [Cause.invalid(field, value, f'{field} in body must be of type {expected}: "{_type_name(value)}"')]
    causes: list[Cause] = []
    if "enum" in schema and value not in schema["enum"]:
        causes.append(Cause.unsupported(field, value, schema["enum"]))
    if isinstance(value, int | float) and not isinstance(value, bool):
        highest, lowest = schema.get("maximum"), schema.get("minimum")
        if highest is not None and (value > highest or (schema.get("exclusiveMaximum") and value == highest)):
            causes.append(Cause.invalid(field, value, f"{field} in body should be less than or equal to {highest}"))
        if lowest is not None and (value < lowest or (schema.get("exclusiveMinimum") and value == lowest)):
            causes.append(Cause.invalid(field, value, f"{field} in body should be greater than or equal to {lowest}"))
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            causes.append(Cause("FieldValueTooLong", field, f"Too long: may not be more than {schema['maxLength']}"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            causes.append(
                Cause.invalid(field, value, f"{field} in body should be at least {schema['minLength']} chars long")
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            causes.append(Cause.invalid(field, value, f"{field} in body should match '{schema['pattern']}'"))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            causes.append(
                Cause(
                    "FieldValueTooMany", field, f"Too many: {len(value)}: must have at most {schema['maxItems']} items"
                )
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            causes.append(
                Cause.invalid(field, value, f"{field} in body should have at least {schema['minItems']} items")
            )
        if isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                causes += validate_schema(item, schema["items"], f"{path}[{index}]")
    if isinstance(value, dict):
        for required in schema.get("required") or []:
            if required not in value:
                causes.append(Cause.required(f"{path}.{required}" if path else required))
        for key, item in value.items():
            if root and key in ("apiVersion", "kind", "metadata"):
                continue
            subschema = (schema.get("properties") or {}).get(key)
            if subschema is None and isinstance(schema.get("additionalProperties"), dict):
                subschema = schema["additionalProperties"]
            if subschema is not None:
                causes += validate_schema(item, subschema, f"{path}.{key}" if path else key)
    for subschema in schema.get("allOf") or []:
        causes += validate_schema(value, subschema, path)
    if schema.get("anyOf") and not any(not validate_schema(value, s, path) for s in schema["anyOf"]):
        causes.append(Cause.invalid(field, value, f"{field} in body must match at least one schema (anyOf)"))
    if schema.get("oneOf") and sum(not validate_schema(value, s, path) for s in schema["oneOf"]) != 1:
        causes.append(Cause.invalid(field, value, f"{field} in body must match exactly one schema (oneOf)"))
    if isinstance(schema.get("not"), dict) and not validate_schema(value, schema["not"], path):
        causes.append(Cause.invalid(field, value, f"{field} in body must not validate the schema (not)"))
    return causes


# --------------------------------------------------------------------------------------------
# Object metadata rules shared by all kinds.
# --------------------------------------------------------------------------------------------

_DNS_SUBDOMAIN: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SERVER_MANAGED: Final = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
    "selfLink",
    "managedFields",
)
_NAME_CHARS: Final = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand


def _validate_metadata(meta: Body, *, dns_label: bool, check_name: bool) -> list[Cause]:
    for field in ("labels", "annotations"):
        values = meta.get(field)
        if values is not None and (
            not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values())
        ):
            raise bad_request(f"json: cannot unmarshal metadata.{field}: values must be strings")
    causes: list[Cause] = []
    name = meta.get("name", "")
    if check_name:
        if dns_label and (len(name) > 63 or not re.fullmatch(_DNS_LABEL, name)):
            causes.append(
                Cause.invalid(
                    "metadata.name",
                    name,
                    (
                        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                        "and must start and end with an alphanumeric character "
                        f"(regex used for validation is '{_DNS_LABEL}')"
                    ),
                )
            )
        elif not dns_label and (len(name) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, name)):
            causes.append(
                Cause.invalid(
                    "metadata.name",
                    name,
                    (
                        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                        "'-' or '.', and must start and end with an alphanumeric character "
                        f"(regex used for validation is '{_DNS_SUBDOMAIN}')"
                    ),
                )
            )
    for field in ("labels", "annotations"):
        for key, value in (meta.get(field) or {}).items():
            if not re.fullmatch(_LABEL_KEY, key) or len(key.rsplit("/", 1)[-1]) > 63:
                causes.append(
                    Cause.invalid(
                        f"metadata.{field}",
                        key,
                        "name part must consist of alphanumeric "
                        "characters, '-', '_' or '.', and must start and end with an "
                        "alphanumeric character",
                    )
                )
            if field == "labels" and (len(value) > 63 or not re.fullmatch(_LABEL_VALUE, value)):
                causes.append(
                    Cause.invalid(
                        "metadata.labels",
                        value,
                        "a valid label must be an empty string or "
                        "consist of alphanumeric characters, '-', '_' or '.', and must start "
                        "and end with an alphanumeric character",
                    )
                )
    return causes


_POD_DEFAULTS: Final[Mapping[str, Any]] = {
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "securityContext": {},
    "schedulerName": "default-scheduler",
}


def _default_container(container: Body) -> None:
    """The defaults the API server gives every container of a pod template."""
    image = str(container.get("image", ""))
    tagged = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
    container.setdefault("imagePullPolicy", "IfNotPresent" if tagged or "@" in image else "Always")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def _version_rank(version: str) -> tuple[int, int, int]:
    """Kubernetes version priority: v2 > v1 > v1beta2 > v1beta1 > v1alpha1."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if m is None:
        return (0, 0, 0)
    stability = {"alpha": 1, "beta": 2, None: 3}[m[2]]
    return (stability, int(m[1]), int(m[3] or 0))


# --------------------------------------------------------------------------------------------
# The emulator.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Api:
    """A served resource with what the handlers need to know about it."""

    resource: kmock.resource
    info: kmock.ResourceInfo
    custom: bool

    @property
    def group(self) -> str:
        return self.resource.group or ""

    @property
    def version(self) -> str:
        return self.resource.version or ""

    @property
    def plural(self) -> str:
        return self.resource.plural or ""

    @property
    def kind(self) -> str:
        return self.info.kind or self.plural.capitalize()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def namespaced(self) -> bool:
        return self.info.namespaced is not False

    @property
    def has_status(self) -> bool:
        return "status" in self.info.subresources

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def not_found(self, name: str) -> ApiError:
        return ApiError(
            404,
            "NotFound",
            f'{self.group_resource} "{name}" not found',
            {"name": name, "group": self.group, "kind": self.plural},
        )

    def conflict(
        self,
        name: str,
        reason: str = "the object has been modified; please apply your changes to the latest version and try again",
    ) -> ApiError:
        return ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {self.group_resource} "{name}": {reason}',
            {"name": name, "group": self.group, "kind": self.plural},
        )

    def invalid(self, name: str, causes: Sequence[Cause]) -> ApiError:
        errors = [f"{c.field}: {c.message}" for c in causes]
        summary = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
        group_kind = f"{self.kind}.{self.group}" if self.group else self.kind
        return ApiError(
            422,
            "Invalid",
            f'{group_kind} "{name}" is invalid: {summary}',
            {
                "name": name,
                "group": self.group,
                "kind": self.kind,
                "causes": [{"reason": c.reason, "message": c.message, "field": c.field} for c in causes],
            },
        )

    def spec_of(self, obj: Mapping[str, Any]) -> Body:
        """What metadata.generation tracks: everything but metadata (and status if a subresource)."""
        ignored = {"apiVersion", "kind", "metadata"} | ({"status"} if self.has_status else set())
        return {k: v for k, v in obj.items() if k not in ignored}


@dataclasses.dataclass(frozen=True)
class Change:
    """One write as the watch-streams see it; ``old`` lets a watch notice objects leaving a selector."""

    revision: int
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    old: Body | None
    new: Body


@dataclasses.dataclass(eq=False)
class Watch:
    resource: kmock.resource
    selection: Selection
    queue: asyncio.Queue[Change | None] = dataclasses.field(default_factory=asyncio.Queue)

    def event(self, change: Change) -> tuple[str, Body] | None:
        was_seen = change.old is not None and self.selection.matches(change.old)
        is_seen = self.selection.matches(change.new)
        if change.type == "DELETED":
            return ("DELETED", change.new) if is_seen else None
        if is_seen:
            return ("MODIFIED" if was_seen else "ADDED", change.new)
        return ("DELETED", change.new) if was_seen else None


@attrs.define(kw_only=True)
class FidelityEmulator(kmock.KubernetesEmulator):
    """
    ``kmock.KubernetesEmulator`` that answers like a real kube-apiserver.

    Register the served resources first: :meth:`load_builtins` (core/v1, apps/v1, events,
    CRDs, ...), then custom resources by posting their CRD or with :meth:`register_crd`.

    Faithful: resourceVersion/uid/creationTimestamp/generation; 409 on stale resourceVersions;
    the status and scale subresources; merge, JSON and strategic merge patches (415 for
    strategic on custom resources); finalizers and deletionTimestamp; ownerReference garbage
    collection; namespace termination; label/field selectors; paginated lists; watches
    resumable from a resourceVersion (410 once forgotten), with bookmarks for
    ``sendInitialEvents``; Tables for kubectl; CRD schema pruning, defaulting, validation and
    ``fieldValidation=Strict``; just enough OpenAPI v3 for ``kubectl apply`` and ``explain``;
    the Deployment and Service defaults and the Deployment selector rules.

    Simpler than a real cluster: no authentication, admission webhooks, server-side apply,
    CEL rules or managedFields; the Deployment controller is simulated separately
    (``canary_bench.cluster``); core/v1 and events.k8s.io/v1 events are stored apart;
    every kind gets metadata.generation; built-in kinds are not validated against their
    schemas (beyond the rules above) and keep unknown fields; watches send no periodic bookmarks.

    Its methods are not thread-safe: call them in the loop that serves the emulator.
    """

    require_namespaces: bool = True  # a namespaced create into a missing namespace is a 404, as in a cluster
    history_limit: int | None = 1000  # versions kept per object in ``emulator.objects[...].history``
    change_log_limit: int = 10_000  # changes per resource a watch can resume from before 410 Gone
    watch_poll_interval: float = 1.0  # how often an idle watch checks that its client is still there

    _revision: int = attrs.field(default=0, init=False)
    _uids: dict[str, ObjectKey] = attrs.field(factory=dict, init=False)
    _watches: set[Watch] = attrs.field(factory=set, init=False)
    _changes: dict[kmock.resource, collections.deque[Change]] = attrs.field(factory=dict, init=False)
    _forgotten: dict[kmock.resource, int] = attrs.field(factory=dict, init=False)
    _columns: dict[kmock.resource, tuple[PrinterColumn, ...]] = attrs.field(factory=dict, init=False)
    _schemas: dict[kmock.resource, Mapping[str, Any]] = attrs.field(factory=dict, init=False)
    _custom: set[kmock.resource] = attrs.field(factory=set, init=False)
    _cluster_ips: Iterator[int] = attrs.field(factory=lambda: itertools.count(10), init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Above kmock's own fallbacks, below any reaction a test declares: fault injection wins.
        (self.fallback**1)[self._is_resource_request] << self._serve_resource
        (self.fallback**1)["get /openapi/v3"] << self._serve_openapi_paths
        (self.fallback**1)["get", re.compile(r"/openapi/v3/.+")] << self._serve_openapi_group_version

    # ---------------------------------------------------------------- registration

    def load_builtins(self) -> None:
        """Serve the built-in kinds: core/v1, apps/v1, events.k8s.io, CRDs, Gateway API, ..."""
        self.resources.load_bundled()
        self.resources[CRDS] = kmock.ResourceInfo(
            namespaced=False,
            kind="CustomResourceDefinition",
            singular="customresourcedefinition",
            verbs=ALL_VERBS,
            shortnames={"crd", "crds"},
            subresources={"status"},
        )

    def register(
        self,
        resource: kmock.resource | str,
        info: kmock.ResourceInfo,
        *,
        printer_columns: Iterable[PrinterColumn] | None = None,
        schema: Mapping[str, Any] | None = None,
        custom: bool | None = None,
    ) -> kmock.resource:
        """Serve a resource; ``custom`` (default: by its group) disables strategic merge patches."""
        res = kmock.resource(resource) if isinstance(resource, str) else resource
        self.resources[res] = info
        if printer_columns is not None:
            self._columns[res] = tuple(printer_columns)
        if schema is not None:
            self._schemas[res] = schema
        else:
            self._schemas.pop(res, None)
        if custom if custom is not None else res.group not in BUILTIN_GROUPS:
            self._custom.add(res)
        return res

    def register_printer_columns(self, resource: kmock.resource | str, columns: Iterable[PrinterColumn]) -> None:
        res = kmock.resource(resource) if isinstance(resource, str) else resource
        self._columns[res] = tuple(columns)

    def register_crd(self, crd: Mapping[str, Any]) -> list[kmock.resource]:
        """Serve the versions of a CRD with its subresources, printer columns and schema."""
        spec = crd["spec"]
        names = spec["names"]
        registered = []
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            info = kmock.ResourceInfo(
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                kind=names["kind"],
                singular=names.get("singular") or names["kind"].lower(),
                verbs=ALL_VERBS,
                shortnames=names.get("shortNames") or (),
                categories=names.get("categories") or (),
                subresources=(version.get("subresources") or {}).keys(),
            )
            columns = [PrinterColumn.from_crd(c) for c in version.get("additionalPrinterColumns") or []]
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            registered.append(
                self.register(
                    kmock.resource(spec["group"], version["name"], names["plural"]),
                    info,
                    printer_columns=columns or [AGE_COLUMN],
                    schema=schema,
                    custom=True,
                )
            )
        return registered

    def _unregister_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd.get("spec") or {}
        for version in spec.get("versions") or []:
            res = kmock.resource(spec.get("group"), version.get("name"), (spec.get("names") or {}).get("plural"))
            api = self._api_for(res)
            if api is None:
                continue
            for key, body in list(self._stored(api)):
                self._remove(api, key, body, orphan=True)
            del self.resources[res]
            self._custom.discard(res)
            self._columns.pop(res, None)
            self._schemas.pop(res, None)

    def _served(self) -> list[kmock.resource]:
        return [kmock.resource(res) for res in self.resources]

    def _api_for(self, resource: kmock.resource) -> Api | None:
        if resource not in self.resources:
            return None
        return Api(resource, self.resources[resource], custom=resource in self._custom)

    # ---------------------------------------------------------------- the object store

    def _current(self, key: ObjectKey) -> Body | None:
        if key not in self.objects:
            return None
        obj = self.objects[key]
        return None if obj.deleted else obj.last.raw

    def _stored(self, api: Api, selection: Selection = Selection()) -> list[tuple[ObjectKey, Body]]:
        """Live objects of a resource in the API's list order: by namespace, then by name."""
        found = [(key, obj.last.raw) for key, obj in self.objects.items() if key[0] == api.resource and not obj.deleted]
        found = [(key, body) for key, body in found if selection.matches(body)]
        return sorted(found, key=lambda item: (item[0][1] or "", item[0][2]))

    def _keep(self, key: ObjectKey, body: Body | None) -> None:
        if key not in self.objects:
            if body is not None:
                self.objects[key] = body
            return
        history = self.objects[key].history
        history.append(body)
        if self.history_limit is not None and len(history) > self.history_limit:
            del history[: len(history) - self.history_limit]

    def _commit(
        self, api: Api, key: ObjectKey, change: Literal["ADDED", "MODIFIED", "DELETED"], old: Body | None, new: Body
    ) -> Body:
        self._revision += 1
        new.setdefault("metadata", {})["resourceVersion"] = str(self._revision)
        self._keep(key, new)
        if change == "DELETED":
            self._keep(key, None)
        log = self._changes.setdefault(api.resource, collections.deque())
        log.append(Change(self._revision, change, old, new))
        while len(log) > self.change_log_limit:
            self._forgotten[api.resource] = log.popleft().revision
        for watch in self._watches:
            if watch.resource == api.resource:
                watch.queue.put_nowait(log[-1])
        return new

    @property
    def resource_version(self) -> str:
        return str(self._revision)

    # ---------------------------------------------------------------- admission

    def _admit(self, api: Api, obj: Body, old: Body | None, *, strict: bool = False) -> None:
        """Default and validate an object about to be stored, as the API's decoding and admission do."""
        meta = obj["metadata"]
        causes = _validate_metadata(
            meta, dns_label=api.resource in (NAMESPACES, kmock.resource("v1/services")), check_name=old is None
        )
        match api.group, api.plural:
            case "apps", "deployments":
                causes += self._admit_deployment(obj, old)
            case "", "services":
                causes += self._admit_service(obj, old)
            case "", "namespaces":
                obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
                obj.setdefault("status", {}).setdefault("phase", "Active")
                meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            case "apiextensions.k8s.io", "customresourcedefinitions":
                causes += self._admit_crd(obj)
        schema = self._schemas.get(api.resource)
        if schema is not None:
            unknown: list[str] = []
            pruned = prune(obj, schema, root=True, unknown=unknown)
            if strict and unknown:  # kubectl asks for ?fieldValidation=Strict
                fields = ", ".join(f'unknown field "{field}"' for field in unknown)
                raise bad_request(
                    f'{api.kind} in version "{api.version}" cannot be handled as a {api.kind}: '
                    f"strict decoding error: {fields}"
                )
            obj.clear()
            obj.update(pruned)
            apply_defaults(obj, schema)
            causes += validate_schema(obj, schema, root=True)
        if causes:
            raise api.invalid(meta.get("name", ""), causes)

    def _admit_deployment(self, obj: Body, old: Body | None) -> list[Cause]:
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            strategy.setdefault("rollingUpdate", {}).setdefault("maxUnavailable", "25%")
            strategy["rollingUpdate"].setdefault("maxSurge", "25%")
        pod = _get(spec, "template", "spec")
        if isinstance(pod, dict):
            for field, value in _POD_DEFAULTS.items():
                pod.setdefault(field, copy.deepcopy(value))
            for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
                if isinstance(container, dict):
                    _default_container(container)
        causes: list[Cause] = []
        replicas = spec["replicas"]
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            causes.append(Cause.invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
        selector = spec.get("selector")
        labels = _get(spec, "template", "metadata", "labels") or {}
        if not selector:
            causes.append(Cause.required("spec.selector"))
        elif not selector_requirements(selector):
            causes.append(Cause.invalid("spec.selector", selector, "empty selector is invalid for deployment"))
        elif not all(r.matches(labels) for r in selector_requirements(selector)):
            causes.append(
                Cause.invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
            )
        if old is not None and selector != _get(old, "spec", "selector"):
            causes.append(Cause.invalid("spec.selector", selector, "field is immutable"))
        containers = _get(spec, "template", "spec", "containers")
        if not containers:
            causes.append(Cause.required("spec.template.spec.containers"))
        for index, container in enumerate(containers or []):
            for field in ("name", "image"):
                if not _get(container, field):
                    causes.append(Cause.required(f"spec.template.spec.containers[{index}].{field}"))
        return causes

    def _admit_service(self, obj: Body, old: Body | None) -> list[Cause]:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            old_ip = _get(old, "spec", "clusterIP")
            if "clusterIP" not in spec and old_ip is not None:
                spec["clusterIP"] = old_ip
            elif "clusterIP" not in spec:
                number = next(self._cluster_ips)
                spec["clusterIP"] = f"10.96.{number // 250}.{number % 250 + 1}"
            elif old_ip is not None and spec["clusterIP"] != old_ip:
                return [Cause.invalid("spec.clusterIPs[0]", spec["clusterIP"], "may not change once set")]
            spec["clusterIPs"] = [spec["clusterIP"]]
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        causes: list[Cause] = []
        for index, port in enumerate(spec.get("ports") or []):
            port.setdefault("protocol", "TCP")
            if "port" not in port:
                causes.append(Cause.required(f"spec.ports[{index}].port"))
            else:
                port.setdefault("targetPort", port["port"])
        obj.setdefault("status", {}).setdefault("loadBalancer", {})
        return causes

    def _admit_crd(self, obj: Body) -> list[Cause]:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        causes = [Cause.required(f"spec.{field}") for field in ("group", "versions") if not spec.get(field)]
        causes += [Cause.required(f"spec.names.{field}") for field in ("plural", "kind") if not names.get(field)]
        expected = f"{names.get('plural')}.{spec.get('group')}"
        if not causes and obj["metadata"]["name"] != expected:
            causes.append(
                Cause.invalid("metadata.name", obj["metadata"]["name"], 'must be spec.names.plural+"."+spec.group')
            )
        if not causes:
            storage = [v["name"] for v in spec["versions"] if v.get("storage")]
            obj["status"] = {
                "acceptedNames": names,
                "storedVersions": storage,
                "conditions": [
                    {
                        "type": "NamesAccepted",
                        "status": "True",
                        "reason": "NoConflicts",
                        "message": "no conflicts found",
                        "lastTransitionTime": format_time(now()),
                    },
                    {
                        "type": "Established",
                        "status": "True",
                        "reason": "InitialNamesAccepted",
                        "message": "the initial names have been accepted",
                        "lastTransitionTime": format_time(now()),
                    },
                ],
            }
        return causes

    # ---------------------------------------------------------------- writes

    def _check_namespace(self, namespace: str) -> None:
        if not self.require_namespaces or NAMESPACES not in self.resources:
            return
        found = self._current((NAMESPACES, None, namespace))
        if found is None:
            raise ApiError(
                404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"}
            )
        if _get(found, "metadata", "deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def _create(
        self, api: Api, namespace: str | None, body: Any, *, dry_run: bool = False, strict: bool = False
    ) -> Body:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise bad_request("the body of the request is not a JSON object with metadata")
        self._check_kind(api, body)
        obj = copy.deepcopy(body)
        obj["apiVersion"], obj["kind"] = api.api_version, api.kind
        meta = obj.setdefault("metadata", {})
        if api.namespaced:
            if namespace is None:
                namespace = meta.get("namespace") or None
            if namespace is None:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the resource")
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
            self._check_namespace(namespace)
        else:
            namespace = None
            meta.pop("namespace", None)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise api.invalid("", [Cause.required("metadata.name", "name or generateName is required")])
            while True:
                name = prefix + "".join(random.choices(_NAME_CHARS, k=5))
                if self._current((api.resource, namespace, name)) is None:
                    break
            meta["name"] = name
        key = (api.resource, namespace, meta["name"])
        if self._current(key) is not None:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{api.group_resource} "{meta["name"]}" already exists',
                {"name": meta["name"], "group": api.group, "kind": api.plural},
            )
        for field in _SERVER_MANAGED:
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = format_time(now())
        meta["generation"] = 1
        if api.has_status:
            obj.pop("status", None)
        self._admit(api, obj, None, strict=strict)
        if dry_run:
            return obj
        self._commit(api, key, "ADDED", None, obj)
        self._uids[meta["uid"]] = key
        if api.resource == CRDS:
            self.register_crd(obj)
        return obj

    def _check_kind(self, api: Api, body: Mapping[str, Any]) -> None:
        if body.get("apiVersion") not in (None, api.api_version) or body.get("kind") not in (None, api.kind):
            raise bad_request(
                f"the API version in the data ({body.get('apiVersion')}) does not match the expected "
                f"API version ({api.api_version})"
            )

    def _update(
        self,
        api: Api,
        key: ObjectKey,
        old: Body,
        candidate: Any,
        *,
        subresource: str | None,
        dry_run: bool = False,
        strict: bool = False,
    ) -> Body:
        """Store a new version of an existing object: the common tail of PUT and PATCH."""
        if not isinstance(candidate, dict) or not isinstance(candidate.get("metadata", {}), dict):
            raise bad_request("the object is not a JSON object with metadata")
        name = key[2]
        version = _get(candidate, "metadata", "resourceVersion")
        if version and version != _get(old, "metadata", "resourceVersion"):
            raise api.conflict(name)
        if subresource == "status":
            new = copy.deepcopy(old)
            if candidate.get("status") is None:
                new.pop("status", None)
            else:
                new["status"] = copy.deepcopy(candidate["status"])
        else:
            new = copy.deepcopy(candidate)
            self._check_kind(api, new)
            new["apiVersion"], new["kind"] = api.api_version, api.kind
            meta = new.setdefault("metadata", {})
            if meta.get("name", name) != name or (api.namespaced and meta.get("namespace", key[1]) != key[1]):
                raise bad_request(
                    f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
                )
            old_meta = old.get("metadata") or {}
            meta["name"] = name
            if api.namespaced:
                meta["namespace"] = key[1]
            for field in _SERVER_MANAGED:
                meta.pop(field, None)
                if field in old_meta:
                    meta[field] = copy.deepcopy(old_meta[field])
            if api.has_status:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise api.invalid(
                        name,
                        [
                            Cause.forbidden(
                                "metadata.finalizers", "no new finalizers can be added if the object is being deleted"
                            )
                        ],
                    )
        self._admit(api, new, old, strict=strict)
        if api.spec_of(new) != api.spec_of(old):
            new["metadata"]["generation"] = int(_get(old, "metadata", "generation") or 0) + 1
        if new == old or dry_run:
            return new
        if _get(new, "metadata", "deletionTimestamp") and not _get(new, "metadata", "finalizers"):
            return self._remove(api, key, new, old=old)
        self._commit(api, key, "MODIFIED", old, new)
        if api.resource == CRDS:
            self.register_crd(new)
        return new

    def _patch(
        self,
        api: Api,
        key: ObjectKey,
        patch: Any,
        patch_type: PatchType,
        *,
        subresource: str | None,
        dry_run: bool = False,
        strict: bool = False,
    ) -> Body:
        old = self._current(key)
        if old is None:
            raise api.not_found(key[2])
        if patch_type == "strategic" and api.custom:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted "
                "media types include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml",
            )
        candidate = self._patched(api, old, patch, patch_type)
        return self._update(api, key, old, candidate, subresource=subresource, dry_run=dry_run, strict=strict)

    def _patched(self, api: Api, old: Body, patch: Any, patch_type: PatchType) -> Any:
        try:
            match patch_type:
                case "json":
                    return json_patch(old, patch)
                case "merge":
                    if not isinstance(patch, dict):
                        raise bad_request("a merge patch must be a JSON object")
                    return merge_patch(copy.deepcopy(old), patch)
                case "strategic":
                    if not isinstance(patch, dict):
                        raise bad_request("a strategic merge patch must be a JSON object")
                    return strategic_merge(copy.deepcopy(old), patch)
        except PatchError as e:
            # The API server answers a failed JSON patch (e.g. a failed `test`) with 422 Invalid.
            raise ApiError(422, "Invalid", str(e)) from e

    def _delete(self, api: Api, key: ObjectKey, options: Mapping[str, Any], *, dry_run: bool = False) -> Body:
        old = self._current(key)
        if old is None:
            raise api.not_found(key[2])
        meta = old.get("metadata") or {}
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") not in (None, meta.get("uid")):
            raise api.conflict(
                key[2],
                f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                f"UID in object meta: {meta.get('uid')}",
            )
        if preconditions.get("resourceVersion") not in (None, meta.get("resourceVersion")):
            raise api.conflict(
                key[2],
                f"Precondition failed: ResourceVersion in precondition: "
                f"{preconditions['resourceVersion']}, ResourceVersion in meta: "
                f"{meta.get('resourceVersion')}",
            )
        if dry_run or meta.get("deletionTimestamp"):
            return old
        if meta.get("finalizers") or api.resource == NAMESPACES:
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = format_time(now())
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if api.resource == NAMESPACES:
                new.setdefault("status", {})["phase"] = "Terminating"
                self._call_soon(lambda: self._finalize_namespace(key[2]))
            return self._commit(api, key, "MODIFIED", old, new)
        orphan = options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents") is True
        self._remove(api, key, copy.deepcopy(old), orphan=orphan)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": key[2], "group": api.group, "kind": api.plural, "uid": meta.get("uid")},
        }

    def _remove(self, api: Api, key: ObjectKey, last: Body, *, old: Body | None = None, orphan: bool = False) -> Body:
        self._commit(api, key, "DELETED", old or last, last)
        self._uids.pop(_get(last, "metadata", "uid") or "", None)
        if api.resource == CRDS:
            self._unregister_crd(last)
        if not orphan:
            self._call_soon(self._collect_garbage)
        return last

    def _call_soon(self, callback: Callable[[], None]) -> None:
        try:
            asyncio.get_running_loop().call_soon(callback)
        except RuntimeError:  # not served yet (e.g. set up before the server starts): do it now
            callback()

    def _collect_garbage(self) -> None:
        """Delete the objects whose owners are all gone, as the garbage collector does (background)."""
        for key, obj in list(self.objects.items()):
            if obj.deleted:
                continue
            owners = [ref.get("uid") for ref in _get(obj.last.raw, "metadata", "ownerReferences") or []]
            api = self._api_for(key[0])
            if api is not None and owners and not any(uid in self._uids for uid in owners):
                self._delete(api, key, {})

    def _finalize_namespace(self, namespace: str) -> None:
        """The namespace controller: delete the content, then the namespace once it is empty."""
        for key, obj in list(self.objects.items()):
            api = self._api_for(key[0])
            if key[1] == namespace and not obj.deleted and api is not None and api.namespaced:
                self._delete(api, key, {})
        namespaces = self._api_for(NAMESPACES)
        current = self._current((NAMESPACES, None, namespace))
        if namespaces is None or current is None:
            return
        if not any(key[1] == namespace and not obj.deleted for key, obj in self.objects.items()):
            self._remove(namespaces, (NAMESPACES, None, namespace), copy.deepcopy(current))
            return
        try:  # finalizers hold some content: look again later, as the namespace controller does
            asyncio.get_running_loop().call_later(0.1, self._finalize_namespace, namespace)
        except RuntimeError:
            pass

    # ---------------------------------------------------------------- in-process API

    def _api_or_fail(self, resource: kmock.resource | str) -> Api:
        res = kmock.resource(resource) if isinstance(resource, str) else resource
        api = self._api_for(res)
        if api is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return api

    def _key(self, api: Api, namespace: str | None, name: str) -> ObjectKey:
        return (api.resource, namespace if api.namespaced else None, name)

    def get_object(self, resource: kmock.resource | str, namespace: str | None, name: str) -> Body | None:
        api = self._api_or_fail(resource)
        found = self._current(self._key(api, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list_objects(
        self, resource: kmock.resource | str, namespace: str | None = None, label_selector: str = ""
    ) -> list[Body]:
        api = self._api_or_fail(resource)
        selection = Selection(namespace=namespace, labels=parse_label_selector(label_selector))
        return [copy.deepcopy(body) for _, body in self._stored(api, selection)]

    def create_object(self, resource: kmock.resource | str, namespace: str | None, body: Body) -> Body:
        return copy.deepcopy(self._create(self._api_or_fail(resource), namespace, body))

    def patch_object(
        self,
        resource: kmock.resource | str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
    ) -> Body:
        api = self._api_or_fail(resource)
        return copy.deepcopy(
            self._patch(api, self._key(api, namespace, name), patch, patch_type, subresource=subresource)
        )

    def replace_object(
        self,
        resource: kmock.resource | str,
        namespace: str | None,
        name: str,
        body: Body,
        *,
        subresource: str | None = None,
    ) -> Body:
        api = self._api_or_fail(resource)
        key = self._key(api, namespace, name)
        old = self._current(key)
        if old is None:
            raise api.not_found(name)
        return copy.deepcopy(self._update(api, key, old, body, subresource=subresource))

    def delete_object(self, resource: kmock.resource | str, namespace: str | None, name: str) -> Body:
        api = self._api_or_fail(resource)
        return copy.deepcopy(self._delete(api, self._key(api, namespace, name), {}))

    async def watch_objects(
        self, resource: kmock.resource | str, namespace: str | None = None
    ) -> AsyncIterator[tuple[str, Body]]:
        """Existing objects as ADDED, then every change; for in-cluster controllers."""
        api = self._api_or_fail(resource)
        watch, initial = self._open_watch(api, Selection(namespace=namespace), since=None)
        try:
            for existing in initial:
                yield existing
            while (change := await watch.queue.get()) is not None:
                if (event := watch.event(change)) is not None:
                    yield event
        finally:
            self._watches.discard(watch)

    def close_watches(self) -> None:
        """End all watch-streams, so that the server can stop without waiting for them."""
        for watch in self._watches:
            watch.queue.put_nowait(None)

    def _open_watch(self, api: Api, selection: Selection, since: int | None) -> tuple[Watch, list[tuple[str, Body]]]:
        watch = Watch(api.resource, selection)
        if since is None:
            initial: list[tuple[str, Body]] = [("ADDED", body) for _, body in self._stored(api, selection)]
        elif since < self._forgotten.get(api.resource, 0):
            raise _Expired()
        else:
            changes = [c for c in self._changes.get(api.resource, ()) if c.revision > since]
            initial = [event for change in changes if (event := watch.event(change)) is not None]
        self._watches.add(watch)
        return watch, initial

    # ---------------------------------------------------------------- HTTP: routing

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock 0.8's request parser fails on some valid paths, e.g. /api/v1/namespaces (a 500 there):
        # build the request record here so that such requests still reach the emulator.
        try:
            kmock_parsing.parse_path(raw_request.path)
        except ValueError:
            body = await raw_request.read()
            route = parse_route(raw_request.path)
            request = kmock.Request(
                id=len(self._requests),
                raw_request=raw_request,
                url=raw_request.url,
                method=raw_request.method,
                params=dict(raw_request.query),
                headers=dict(raw_request.headers),
                cookies=dict(raw_request.cookies),
                body=body,
                text=body.decode("utf-8", "replace"),
                data=_json_or_none(body),
                resource=route.resource if route else None,
            )
            self._requests.append(request)
            try:
                return await self._handle(request)
            except Exception as e:
                return await self._render_error(e)
        return await super().__call__(raw_request)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # Skip KubernetesEmulator._handle: its naive object tracking is replaced by _serve_resource.
        return await kmock.RawHandler._handle(self, request)

    def _is_resource_request(self, request: kmock.Request) -> bool:
        return parse_route(request.url.path) is not None

    async def _serve_resource(self, request: kmock.Request) -> kmock_rendering.Response:
        route = parse_route(request.url.path)
        assert route is not None  # the criterion guarantees it
        try:
            api = self._api_for(route.resource)
            if api is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self._dispatch(request, api, route)
        except ApiError as e:
            return _json_response(e.code, e.as_status())

    def _dispatch(self, request: kmock.Request, api: Api, route: Route) -> kmock_rendering.Response:
        method = str(getattr(request.method, "value", request.method)).upper()
        params = request.params
        dry_run = params.get("dryRun") == "All"
        strict = params.get("fieldValidation") == "Strict"
        key = self._key(api, route.namespace, route.name or "")
        if route.subresource not in (None, "status", "scale") or (
            route.subresource and route.subresource not in api.info.subresources
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        verb = {
            ("GET", False): "watch" if params.get("watch") in ("true", "1") else "list",
            ("GET", True): "watch" if params.get("watch") in ("true", "1") else "get",
            ("POST", False): "create",
            ("PUT", True): "update",
            ("PATCH", True): "patch",
            ("DELETE", True): "delete",
            ("DELETE", False): "deletecollection",
        }.get((method, route.name is not None))
        if verb is None or (api.info.verbs and verb not in api.info.verbs):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if route.name is None and api.namespaced is False and route.namespace is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")

        match verb:
            case "watch":
                return self._watch_response(request, api, route)
            case "list":
                return self._list_response(request, api, route)
            case "get":
                found = self._current(key)
                if found is None:
                    raise api.not_found(key[2])
                if route.subresource == "scale":
                    return _json_response(200, self._scale_of(found))
                if _wants_table(request):
                    return _json_response(200, self._table(api, [found], request))
                return _json_response(200, found)
            case "create":
                return _json_response(
                    201, self._create(api, route.namespace, _body(request), dry_run=dry_run, strict=strict)
                )
            case "update":
                old = self._current(key)
                if old is None:
                    raise api.not_found(key[2])
                if route.subresource == "scale":
                    return _json_response(200, self._scale(api, key, old, _body(request), dry_run=dry_run))
                return _json_response(
                    200,
                    self._update(
                        api, key, old, _body(request), subresource=route.subresource, dry_run=dry_run, strict=strict
                    ),
                )
            case "patch":
                content_type = _header(request, "Content-Type").split(";")[0].strip()
                patch_type = PATCH_TYPES.get(content_type)
                if patch_type is None:
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        f"the body of the request was in an unknown format - "
                        f"accepted media types include: {', '.join(PATCH_TYPES)}",
                    )
                if route.subresource == "scale":
                    old = self._current(key)
                    if old is None:
                        raise api.not_found(key[2])
                    scale = self._patched(api, self._scale_of(old), _body(request), patch_type)
                    return _json_response(200, self._scale(api, key, old, scale, dry_run=dry_run))
                return _json_response(
                    200,
                    self._patch(
                        api,
                        key,
                        _body(request),
                        patch_type,
                        subresource=route.subresource,
                        dry_run=dry_run,
                        strict=strict,
                    ),
                )
            case "delete":
                options = dict(_body(request, required=False) or {})
                options.update({k: params[k] for k in ("propagationPolicy",) if k in params})
                return _json_response(200, self._delete(api, key, options, dry_run=dry_run))
            case _:  # deletecollection
                selection = self._selection(api, route, params)
                deleted = [self._delete(api, k, {}, dry_run=dry_run) for k, _ in self._stored(api, selection)]
                return _json_response(
                    200,
                    {
                        "kind": f"{api.kind}List",
                        "apiVersion": api.api_version,
                        "metadata": {"resourceVersion": self.resource_version},
                        "items": [d for d in deleted if d.get("kind") != "Status"],
                    },
                )

    def _selection(self, api: Api, route: Route, params: Mapping[str, str]) -> Selection:
        return Selection(
            namespace=route.namespace if api.namespaced else None,
            name=route.name,
            labels=parse_label_selector(params.get("labelSelector", "")),
            fields=parse_field_selector(params.get("fieldSelector", ""), api.group, api.plural),
        )

    # ---------------------------------------------------------------- HTTP: reading

    def _list_response(self, request: kmock.Request, api: Api, route: Route) -> kmock_rendering.Response:
        params = request.params
        stored = self._stored(api, self._selection(api, route, params))
        start = 0
        if params.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(params["continue"]))
                start = next(
                    (i for i, (key, _) in enumerate(stored) if [key[1] or "", key[2]] > token["after"]), len(stored)
                )
            except (ValueError, KeyError, TypeError) as e:
                raise bad_request(f"continue key is not valid: {e}") from e
        limit = int(params.get("limit") or 0)
        page = stored[start : start + limit] if limit > 0 else stored[start:]
        metadata: Body = {"resourceVersion": self.resource_version}
        if limit > 0 and start + limit < len(stored):
            last = page[-1][0]
            after = json.dumps({"after": [last[1] or "", last[2]]}).encode()
            metadata["continue"] = base64.urlsafe_b64encode(after).decode()
            metadata["remainingItemCount"] = len(stored) - start - limit
        items = [body for _, body in page]
        if _wants_table(request):
            table = self._table(api, items, request)
            table["metadata"] = metadata
            return _json_response(200, table)
        if not api.custom:  # typed lists of the built-in kinds omit the items' apiVersion and kind
            items = [{k: v for k, v in body.items() if k not in ("apiVersion", "kind")} for body in items]
        return _json_response(
            200, {"kind": f"{api.kind}List", "apiVersion": api.api_version, "metadata": metadata, "items": items}
        )

    def _watch_response(self, request: kmock.Request, api: Api, route: Route) -> kmock_rendering.Response:
        params = request.params
        selection = self._selection(api, route, params)
        since_text = params.get("resourceVersion") or "0"
        try:
            since = None if since_text == "0" else int(since_text)
            timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        except ValueError as e:
            raise bad_request(str(e)) from e
        try:
            watch, initial = self._open_watch(api, selection, since)
        except _Expired:
            gone = ApiError(
                410, "Expired", f"too old resource version: {since_text} ({self._forgotten.get(api.resource, 0)})"
            )
            line = json.dumps({"type": "ERROR", "object": gone.as_status()}).encode() + b"\n"
            return kmock_rendering.Response(status=200, headers=JSON_HEADERS, payload=(line,))
        bookmark = params.get("sendInitialEvents") == "true"
        return kmock_rendering.Response(
            status=200,
            headers=JSON_HEADERS,
            payload=self._stream(
                request, api, watch, initial, timeout=timeout, bookmark=bookmark, table=_wants_table(request)
            ),
        )

    async def _stream(
        self,
        request: kmock.Request,
        api: Api,
        watch: Watch,
        initial: list[tuple[str, Body]],
        *,
        timeout: float | None,
        bookmark: bool,
        table: bool,
    ) -> AsyncIterator[bytes]:
        def line(kind: str, obj: Body) -> bytes:
            payload = self._table(api, [obj], request) if table and kind != "BOOKMARK" else obj
            return json.dumps({"type": kind, "object": payload}).encode() + b"\n"

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        try:
            yield b""  # send the headers now: a watch can stay silent for long
            for kind, obj in initial:
                yield line(kind, obj)
            if bookmark:
                yield line(
                    "BOOKMARK",
                    {
                        "kind": api.kind,
                        "apiVersion": api.api_version,
                        "metadata": {
                            "resourceVersion": self.resource_version,
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                )
            while True:
                wait = (
                    self.watch_poll_interval
                    if deadline is None
                    else min(self.watch_poll_interval, deadline - loop.time())
                )
                if wait <= 0:
                    return
                try:
                    change = await asyncio.wait_for(watch.queue.get(), wait)
                except TimeoutError:
                    transport = request._raw_request.transport if request._raw_request is not None else None
                    if transport is None or transport.is_closing():
                        return
                    continue
                if change is None:
                    return
                if (event := watch.event(change)) is not None:
                    yield line(*event)
        finally:
            self._watches.discard(watch)

    def _scale_of(self, obj: Body) -> Body:
        meta = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
            },
            "spec": {"replicas": _get(obj, "spec", "replicas") or 0},
            "status": {
                "replicas": _get(obj, "status", "replicas") or 0,
                "selector": ",".join(str(r) for r in selector_requirements(_get(obj, "spec", "selector") or {})),
            },
        }

    def _scale(self, api: Api, key: ObjectKey, old: Body, scale: Any, *, dry_run: bool) -> Body:
        replicas = _get(scale, "spec", "replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                f'Scale.autoscaling "{key[2]}" is invalid: spec.replicas: '
                f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0",
            )
        candidate = copy.deepcopy(old)
        candidate["spec"]["replicas"] = replicas
        candidate["metadata"]["resourceVersion"] = _get(scale, "metadata", "resourceVersion")
        return self._scale_of(self._update(api, key, old, candidate, subresource=None, dry_run=dry_run))

    def _table(self, api: Api, objs: Sequence[Body], request: kmock.Request) -> Body:
        columns = self._columns.get(api.resource) or _BUILTIN_COLUMNS.get((api.group, api.plural)) or (AGE_COLUMN,)
        include = request.params.get("includeObject", "PartialObjectMetadata")
        moment = now()
        rows = []
        for obj in objs:
            row: Body = {"cells": [_get(obj, "metadata", "name")] + [c.cell(obj, moment) for c in columns]}
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
            "metadata": {"resourceVersion": self.resource_version},
            "columnDefinitions": [c.definition() for c in (name, *columns)],
            "rows": rows,
        }

    # ---------------------------------------------------------------- HTTP: discovery

    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None
        group, version = request.resource.group, request.resource.version
        entries: list[Body] = []
        for res in sorted(self._served(), key=lambda r: r.plural or ""):
            if res.group != group or res.version != version:
                continue
            info = self.resources[res]
            entry: Body = {
                "name": res.plural,
                "singularName": info.singular or "",
                "namespaced": info.namespaced is not False,
                "kind": info.kind or "",
                "verbs": sorted(info.verbs),
            }
            if info.shortnames:
                entry["shortNames"] = sorted(info.shortnames)
            if info.categories:
                entry["categories"] = sorted(info.categories)
            entries.append(entry)
            for sub in sorted(info.subresources):
                subentry: Body = {
                    "name": f"{res.plural}/{sub}",
                    "singularName": "",
                    "namespaced": entry["namespaced"],
                    "kind": info.kind or "",
                    "verbs": ["get", "patch", "update"],
                }
                if sub == "scale":
                    subentry.update(group="autoscaling", version="v1", kind="Scale")
                entries.append(subentry)
        if not entries and group != "":
            raise kmock.KubernetesResourceNotFoundError()
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": entries,
        }

    def _group_info(self, group: str) -> Body:
        versions = sorted(
            {res.version or "" for res in self._served() if res.group == group}, key=_version_rank, reverse=True
        )
        return {
            "name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
            "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
        }

    async def _serve_group(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None
        group = request.resource.group or ""
        if not any(res.group == group for res in self._served()):
            raise kmock.KubernetesResourceNotFoundError()
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group_info(group)}

    async def _serve_apis(self, request: kmock.Request) -> kmock.Payload:
        groups = sorted({res.group or "" for res in self._served()} - {""})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group_info(g) for g in groups]}

    # ---------------------------------------------------------------- HTTP: OpenAPI v3
    # kubectl refuses to apply manifests unless OpenAPI v3 shows it that the server validates
    # fields itself (the fieldValidation parameter of PATCH). Only that much and the schemas of
    # custom resources are published; kubectl falls back to its built-in knowledge otherwise.

    async def _serve_openapi_paths(self, request: kmock.Request) -> kmock.Payload:
        versions = sorted({(res.group or "", res.version or "") for res in self._served()})
        paths = {}
        for group, version in versions:
            prefix = f"apis/{group}/{version}" if group else f"api/{version}"
            paths[prefix] = {"serverRelativeURL": f"/openapi/v3/{prefix}?hash={self.resource_version}"}
        return {"paths": paths}

    async def _serve_openapi_group_version(self, request: kmock.Request) -> kmock.Payload:
        parts = request.url.path.split("/")[3:]  # /openapi/v3/apis/GROUP/VERSION or /openapi/v3/api/VERSION
        group, version = (parts[1], parts[2]) if parts[:1] == ["apis"] and len(parts) == 3 else ("", parts[-1])
        paths: Body = {}
        schemas: Body = {}
        field_validation = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for res in self._served():
            if res.group != group or res.version != version:
                continue
            api = Api(res, self.resources[res], custom=res in self._custom)
            gvk = {"group": group, "version": version, "kind": api.kind}
            scope = f"namespaces/{{namespace}}/{api.plural}" if api.namespaced else api.plural
            paths[f"/{'apis/' + group if group else 'api'}/{version}/{scope}/{{name}}"] = {
                "patch": {
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": [field_validation],
                    "responses": {"200": {"description": "OK"}},
                },
            }
            if res in self._schemas:
                name = ".".join([*reversed(group.split(".")), version, api.kind])
                schemas[name] = {**self._schemas[res], "x-kubernetes-group-version-kind": [gvk]}
        if not paths:
            raise kmock.KubernetesResourceNotFoundError()
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.26.4"},
            "paths": paths,
            "components": {"schemas": schemas},
        }


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _header(request: kmock.Request, name: str) -> str:
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), "")


def _wants_table(request: kmock.Request) -> bool:
    accept = _header(request, "Accept")
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def _body(request: kmock.Request, *, required: bool = True) -> Any:
    if not request.body:
        if required:
            raise bad_request("the request body is empty")
        return None
    try:
        return json.loads(request.body)
    except ValueError as e:
        raise bad_request(f"the request body is not JSON: {e}") from e


def _json_response(code: int, body: Body) -> kmock_rendering.Response:
    return kmock_rendering.Response(status=code, headers=JSON_HEADERS, payload=json.dumps(body).encode())
