"""
The CRDs of the traffic routers the operator drives: Gateway API's HTTPRoute and Istio's VirtualService
and DestinationRule, as CustomResourceDefinition objects to post to the emulator.

The upstream CRDs cannot be fetched here (no network beyond package registries), so these
schemas are written by hand after the published ones (Gateway API v1.2 standard channel,
Istio 1.24): every field the operator or a typical user's route sets is declared with its
type, enum, bounds and default, so pruning, defaulting and validation bite as in a cluster
(a misspelt field vanishes, ``weight: -1`` is a 422, an HTTPRoute match gets its default
``PathPrefix /``). Fields the operator never reads (filters' payloads, retries, fault
injection, status) are kept whole with ``x-kubernetes-preserve-unknown-fields``. CEL rules
of the upstream CRDs are not checked (the emulator checks none).
"""

from __future__ import annotations

from typing import Any, Final

_PRESERVE: Final = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_STRINGS: Final = {"type": "array", "items": {"type": "string"}}
_NAME: Final = {"type": "string", "minLength": 1, "maxLength": 253}
_SECTION_NAME: Final = {
    "type": "string",
    "minLength": 1,
    "maxLength": 253,
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
}
_PORT: Final = {"type": "integer", "minimum": 1, "maximum": 65535}


def _crd(group: str, kind: str, plural: str, versions: list[str], spec: dict[str, Any]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": _PRESERVE,
        },
        "required": ["spec"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": index == 0,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                }
                for index, version in enumerate(versions)
            ],
        },
    }


# ---------------------------------------------------------------- Gateway API

_HTTP_HEADER_MATCH: Final = {
    "type": "object",
    "required": ["name", "value"],
    "properties": {
        "type": {"type": "string", "enum": ["Exact", "RegularExpression"], "default": "Exact"},
        "name": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": r"^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$"},
        "value": {"type": "string", "minLength": 1, "maxLength": 4096},
    },
}

_HTTP_ROUTE_MATCH: Final = {
    "type": "object",
    "properties": {
        "path": {
            "type": "object",
            "default": {"type": "PathPrefix", "value": "/"},
            "properties": {
                "type": {
                    "type": "string",
                    "enum": ["Exact", "PathPrefix", "RegularExpression"],
                    "default": "PathPrefix",
                },
                "value": {"type": "string", "maxLength": 1024, "default": "/"},
            },
        },
        "headers": {"type": "array", "maxItems": 16, "items": _HTTP_HEADER_MATCH},
        "queryParams": {"type": "array", "maxItems": 16, "items": _HTTP_HEADER_MATCH},
        "method": {
            "type": "string",
            "enum": ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"],
        },
    },
}

_BACKEND_REF: Final = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "group": {"type": "string", "maxLength": 253, "default": ""},
        "kind": {"type": "string", "minLength": 1, "maxLength": 63, "default": "Service"},
        "name": _NAME,
        "namespace": {"type": "string", "minLength": 1, "maxLength": 63},
        "port": _PORT,
        "weight": {"type": "integer", "minimum": 0, "maximum": 1000000, "default": 1},
        "filters": {"type": "array", "maxItems": 16, "items": _PRESERVE},
    },
}

HTTP_ROUTE_SPEC: Final = {
    "type": "object",
    "properties": {
        "parentRefs": {
            "type": "array",
            "maxItems": 32,
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "group": {"type": "string", "default": "gateway.networking.k8s.io"},
                    "kind": {"type": "string", "default": "Gateway"},
                    "namespace": {"type": "string"},
                    "name": _NAME,
                    "sectionName": _SECTION_NAME,
                    "port": _PORT,
                },
            },
        },
        "hostnames": {"type": "array", "maxItems": 16, "items": {"type": "string", "maxLength": 253}},
        "rules": {
            "type": "array",
            "maxItems": 16,
            "default": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}],
            "items": {
                "type": "object",
                "properties": {
                    "name": _SECTION_NAME,
                    "matches": {
                        "type": "array",
                        "maxItems": 64,
                        "default": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "items": _HTTP_ROUTE_MATCH,
                    },
                    "filters": {"type": "array", "maxItems": 16, "items": _PRESERVE},
                    "backendRefs": {"type": "array", "maxItems": 16, "items": _BACKEND_REF},
                    "timeouts": {
                        "type": "object",
                        "properties": {"request": {"type": "string"}, "backendRequest": {"type": "string"}},
                    },
                    "sessionPersistence": _PRESERVE,
                },
            },
        },
    },
}

HTTP_ROUTE_CRD: Final = _crd("gateway.networking.k8s.io", "HTTPRoute", "httproutes", ["v1", "v1beta1"], HTTP_ROUTE_SPEC)

# ---------------------------------------------------------------- Istio

_STRING_MATCH: Final = {
    "type": "object",
    "properties": {"exact": {"type": "string"}, "prefix": {"type": "string"}, "regex": {"type": "string"}},
    "oneOf": [{"required": ["exact"]}, {"required": ["prefix"]}, {"required": ["regex"]}],
}

_DESTINATION: Final = {
    "type": "object",
    "required": ["host"],
    "properties": {
        "host": {"type": "string", "minLength": 1},
        "subset": {"type": "string"},
        "port": {"type": "object", "properties": {"number": {"type": "integer", "minimum": 0, "maximum": 4294967295}}},
    },
}

_HTTP_MATCH_REQUEST: Final = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "uri": _STRING_MATCH,
        "scheme": _STRING_MATCH,
        "method": _STRING_MATCH,
        "authority": _STRING_MATCH,
        "headers": {"type": "object", "additionalProperties": _STRING_MATCH},
        "withoutHeaders": {"type": "object", "additionalProperties": _STRING_MATCH},
        "queryParams": {"type": "object", "additionalProperties": _STRING_MATCH},
        "port": {"type": "integer", "minimum": 0, "maximum": 4294967295},
        "sourceLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "gateways": _STRINGS,
        "ignoreUriCase": {"type": "boolean"},
        "sourceNamespace": {"type": "string"},
    },
}

VIRTUAL_SERVICE_SPEC: Final = {
    "type": "object",
    "properties": {
        "hosts": _STRINGS,
        "gateways": _STRINGS,
        "exportTo": _STRINGS,
        "http": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "match": {"type": "array", "items": _HTTP_MATCH_REQUEST},
                    "route": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["destination"],
                            "properties": {
                                "destination": _DESTINATION,
                                "weight": {"type": "integer", "minimum": 0, "maximum": 100},
                                "headers": _PRESERVE,
                            },
                        },
                    },
                    "redirect": _PRESERVE,
                    "directResponse": _PRESERVE,
                    "delegate": _PRESERVE,
                    "rewrite": _PRESERVE,
                    "timeout": {"type": "string"},
                    "retries": _PRESERVE,
                    "fault": _PRESERVE,
                    "mirror": _PRESERVE,
                    "mirrorPercentage": _PRESERVE,
                    "mirrors": {"type": "array", "items": _PRESERVE},
                    "corsPolicy": _PRESERVE,
                    "headers": _PRESERVE,
                },
            },
        },
        "tcp": {"type": "array", "items": _PRESERVE},
        "tls": {"type": "array", "items": _PRESERVE},
    },
}

DESTINATION_RULE_SPEC: Final = {
    "type": "object",
    "required": ["host"],
    "properties": {
        "host": {"type": "string", "minLength": 1},
        "trafficPolicy": _PRESERVE,
        "subsets": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "trafficPolicy": _PRESERVE,
                },
            },
        },
        "exportTo": _STRINGS,
        "workloadSelector": _PRESERVE,
    },
}

_ISTIO_VERSIONS: Final = ["v1", "v1beta1", "v1alpha3"]
VIRTUAL_SERVICE_CRD: Final = _crd(
    "networking.istio.io", "VirtualService", "virtualservices", _ISTIO_VERSIONS, VIRTUAL_SERVICE_SPEC
)
DESTINATION_RULE_CRD: Final = _crd(
    "networking.istio.io", "DestinationRule", "destinationrules", _ISTIO_VERSIONS, DESTINATION_RULE_SPEC
)

ROUTER_CRDS: Final = (HTTP_ROUTE_CRD, VIRTUAL_SERVICE_CRD, DESTINATION_RULE_CRD)
