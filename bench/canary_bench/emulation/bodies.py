"""
Objects as the API passes them around: plain JSON dicts.

Every layer of the emulator reads nested fields of objects that a client may have sent
half-filled; :func:`resolve` is the one lookup that tolerates missing levels and wrong types.
"""

from __future__ import annotations

from typing import Any

Body = dict[str, Any]


def resolve(obj: Any, *path: str | int) -> Any:
    """The value at ``path`` (keys and list indexes), or None where any level is missing."""
    for part in path:
        if isinstance(part, int):
            obj = obj[part] if isinstance(obj, list) and len(obj) > part else None
        else:
            obj = obj.get(part) if isinstance(obj, dict) else None
    return obj
