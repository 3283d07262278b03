"""How the data planes pick a backend for a request: Gateway API, Istio and the NGINX Ingress Controller.

The traffic simulator sends each class of requests (a share of all requests, with its own
path, headers and cookies) through the route objects the way the data plane would, and gets
back the share of those requests each Service receives. Kubernetes then spreads a Service's
share over its ready endpoints (see ``traffic.RouteTrafficSource``).

What is modelled, after each project's documented semantics:
- Gateway API (HTTPRoute): a rule matches when one of its matches does (path Exact,
  PathPrefix on segment boundaries, RegularExpression; headers Exact or RegularExpression,
  names case-insensitive; all must hold). Among matching rules the most specific wins: an
  Exact path, then the longest path, then the most header matches, then the first rule.
  The winning rule's backendRefs split its requests by weight (default 1).
- Istio (VirtualService): the first http route with a matching match (no match: all), uri
  and header exact/prefix/regex, header names lowercase; weights default to 100 for a lone
  destination. A subset is resolved through the DestinationRule to pod labels.
- NGINX Ingress: a canary Ingress for the same host takes a request first by header
  (``always``, or the exact ``-value``, or the ``-pattern``; ``never`` keeps it off), then
  by cookie (``always`` / ``never``), then by ``canary-weight`` of ``canary-weight-total``.

Simpler than the real data planes: one host per simulation (hostnames are not matched),
no query-parameter or method matches, no filters or mirrors.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

Shares = dict[tuple[str, str | None], float]  # (Service, Istio subset or None) -> share of the class's requests


@dataclasses.dataclass(frozen=True)
class RequestClass:
    """A kind of request: its share of all requests, its path, headers and cookies."""

    share: float = 1.0
    path: str = "/"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    cookies: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def header(self, name: str) -> str | None:
        lowered = {k.lower(): v for k, v in self.headers.items()}
        if name.lower() == "cookie" and self.cookies:
            return "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return lowered.get(name.lower())


EVERYONE = (RequestClass(),)


class NoRoute(LookupError):
    """No rule of the route matches the request: the data plane answers 404."""


def _split(refs: Sequence[tuple[str, str | None, float]]) -> Shares:
    total = sum(weight for _, _, weight in refs)
    shares: Shares = {}
    if total <= 0:
        return shares
    for service, subset, weight in refs:
        shares[(service, subset)] = shares.get((service, subset), 0.0) + weight / total
    return shares


# ---------------------------------------------------------------- Gateway API


def _gateway_path(match: Mapping[str, Any], path: str) -> tuple[bool, int, int]:
    """(matches, exactness, length) of an HTTPRoute path match."""
    spec = match.get("path") or {"type": "PathPrefix", "value": "/"}
    kind, value = spec.get("type", "PathPrefix"), spec.get("value", "/")
    if kind == "Exact":
        return path == value, 1, len(value)
    if kind == "RegularExpression":
        return re.fullmatch(value, path) is not None, 0, len(value)
    prefix = value.rstrip("/")
    return (path == prefix or path.startswith(prefix + "/") or not prefix), 0, len(value)


def _gateway_headers(match: Mapping[str, Any], request: RequestClass) -> bool:
    for header in match.get("headers") or []:
        value = request.header(header["name"])
        if value is None:
            return False
        if header.get("type", "Exact") == "RegularExpression":
            if re.search(header["value"], value) is None:
                return False
        elif value != header["value"]:
            return False
    return True


def http_route_shares(route: Mapping[str, Any], request: RequestClass) -> Shares:
    best: tuple[int, int, int, int] | None = None
    chosen: Mapping[str, Any] | None = None
    for index, rule in enumerate((route.get("spec") or {}).get("rules") or []):
        for match in rule.get("matches") or [{}]:
            ok, exact, length = _gateway_path(match, request.path)
            if not ok or not _gateway_headers(match, request):
                continue
            rank = (exact, length, len(match.get("headers") or []), -index)
            if best is None or rank > best:
                best, chosen = rank, rule
    if chosen is None:
        raise NoRoute(f"no rule of HTTPRoute {route['metadata']['name']} matches {request.path}")
    refs = [(ref["name"], None, float(ref.get("weight", 1))) for ref in chosen.get("backendRefs") or []]
    return _split(refs)


# ---------------------------------------------------------------- Istio


def _string_match(spec: Mapping[str, str], value: str | None) -> bool:
    if value is None:
        return False
    if "exact" in spec:
        return value == spec["exact"]
    if "prefix" in spec:
        return value.startswith(spec["prefix"])
    return re.fullmatch(spec["regex"], value) is not None  # Istio regexes are RE2, anchored


def _istio_match(match: Mapping[str, Any], request: RequestClass) -> bool:
    if "uri" in match and not _string_match(match["uri"], request.path):
        return False
    return all(_string_match(spec, request.header(name)) for name, spec in (match.get("headers") or {}).items())


def virtual_service_shares(service: Mapping[str, Any], request: RequestClass) -> Shares:
    for route in (service.get("spec") or {}).get("http") or []:
        matches = route.get("match") or [{}]
        if any(_istio_match(match, request) for match in matches):
            targets = route.get("route") or []
            refs = [
                (
                    str(item["destination"]["host"]).split(".", 1)[0],
                    item["destination"].get("subset"),
                    float(item.get("weight", 100 if len(targets) == 1 else 0)),
                )
                for item in targets
            ]
            return _split(refs)
    raise NoRoute(f"no http route of VirtualService {service['metadata']['name']} matches {request.path}")


# ---------------------------------------------------------------- NGINX Ingress

_NGINX = "nginx.ingress.kubernetes.io/"


def _ingress_service(ingress: Mapping[str, Any], path: str) -> str:
    best: tuple[int, str] | None = None
    for rule in (ingress.get("spec") or {}).get("rules") or []:
        for item in (rule.get("http") or {}).get("paths") or []:
            prefix = item.get("path", "/")
            exact = item.get("pathType") == "Exact"
            ok = path == prefix if exact else path == prefix or path.startswith(prefix.rstrip("/") + "/")
            if ok and (best is None or len(prefix) > best[0]):
                best = (len(prefix), item["backend"]["service"]["name"])
    if best is None:
        default = (ingress.get("spec") or {}).get("defaultBackend")
        if default is None:
            raise NoRoute(f"no path of Ingress {ingress['metadata']['name']} matches {path}")
        return str(default["service"]["name"])
    return best[1]


def _nginx_canary_choice(annotations: Mapping[str, str], request: RequestClass) -> bool | None:
    """True: to the canary; False: kept off it; None: up to the weight."""
    header = annotations.get(_NGINX + "canary-by-header")
    if header:
        value = request.header(header)
        if value is not None:
            wanted, pattern = (
                annotations.get(_NGINX + "canary-by-header-value"),
                annotations.get(_NGINX + "canary-by-header-pattern"),
            )
            if wanted:
                if value == wanted:
                    return True
            elif pattern:
                if re.search(pattern, value):
                    return True
            elif value == "always":
                return True
            elif value == "never":
                return False
    cookie = annotations.get(_NGINX + "canary-by-cookie")
    if cookie and cookie in request.cookies:
        if request.cookies[cookie] == "always":
            return True
        if request.cookies[cookie] == "never":
            return False
    return None


def ingress_shares(main: Mapping[str, Any], canary: Mapping[str, Any] | None, request: RequestClass) -> Shares:
    primary = _ingress_service(main, request.path)
    annotations = ((canary or {}).get("metadata") or {}).get("annotations") or {}
    if canary is None or annotations.get(_NGINX + "canary") != "true":
        return {(primary, None): 1.0}
    canary_service = _ingress_service(canary, request.path)
    choice = _nginx_canary_choice(annotations, request)
    if choice is not None:
        return {(canary_service if choice else primary, None): 1.0}
    weight = float(annotations.get(_NGINX + "canary-weight", "0") or 0)
    total = float(annotations.get(_NGINX + "canary-weight-total", "100") or 100)
    return _split([(primary, None, total - weight), (canary_service, None, weight)])
