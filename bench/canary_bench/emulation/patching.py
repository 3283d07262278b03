"""
Patches: JSON merge (RFC 7386), JSON patch (RFC 6902) and strategic merge (built-in kinds).

Kopf patches with merge patches, kubectl with strategic ones, and a failed JSON patch ``test``
is how clients do compare-and-swap; each differs from the others where it matters (lists are
replaced by a merge but merged by key by a strategic merge), so each is implemented as specified.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from canary_bench.emulation import bodies, errors

PatchType = Literal["merge", "json", "strategic"]

# The Content-Type of a PATCH request says which patch it is.
PATCH_TYPES: Final[Mapping[str, PatchType]] = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
}


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


def apply(old: bodies.Body, patch: Any, patch_type: PatchType) -> Any:
    """The patched object, or the API's error: 400 for a malformed patch, 422 for one that cannot apply."""
    try:
        match patch_type:
            case "json":
                return json_patch(old, patch)
            case "merge":
                if not isinstance(patch, dict):
                    raise errors.bad_request("a merge patch must be a JSON object")
                return merge_patch(copy.deepcopy(old), patch)
            case "strategic":
                if not isinstance(patch, dict):
                    raise errors.bad_request("a strategic merge patch must be a JSON object")
                return strategic_merge(copy.deepcopy(old), patch)
    except PatchError as e:
        # The API server answers a failed JSON patch (e.g. a failed `test`) with 422 Invalid.
        raise errors.ApiError(422, "Invalid", str(e)) from e
