"""
URLs of the resource API: ``/api/v1/...`` and ``/apis/GROUP/VERSION/...``.

kmock 0.8's own path parser fails on some valid paths (e.g. ``/api/v1/namespaces``), so the
emulator parses resource URLs itself, subresources included.
"""

from __future__ import annotations

import dataclasses
import functools

import kmock


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
        return _resource(self.group, self.version, self.plural)


@functools.lru_cache(maxsize=1024)
def _resource(group: str, version: str, plural: str) -> kmock.resource:
    # Building a kmock.resource runs typing's Protocol checks (about 0.1 ms); a served API has few.
    return kmock.resource(group, version, plural)


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
