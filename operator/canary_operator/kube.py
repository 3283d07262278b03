"""A small asynchronous Kubernetes API client for the objects the operator reads and writes.

Kopf watches the CanaryRollouts; this client reads and writes everything else
(Deployments, Services, the CanaryRollout's status) with the credentials Kopf
logged in with. Errors are typed here and translated to Kopf's temporary or
permanent errors only at the handler edge.
"""

from __future__ import annotations

import json
import ssl
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    """The API server answered with an error Status."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


class ConflictError(ApiError):
    """409: somebody wrote the object since we read it."""


class UnreachableError(Exception):
    """The API server could not be reached."""


_credentials: kopf.ConnectionInfo | None = None


def use_credentials(info: kopf.ConnectionInfo) -> None:
    """Remember how Kopf logged in; the client uses the same server and identity."""
    global _credentials
    _credentials = info


def deployment_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    return base if name is None else f"{base}/{name}"


def service_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/services"
    return base if name is None else f"{base}/{name}"


def events_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/events"


def secret_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets/{name}"


def rollout_path(namespace: str, name: str) -> str:
    return f"/apis/canary.dev/v1alpha1/namespaces/{namespace}/canaryrollouts/{name}"


def _to_file(data: str | bytes | None) -> str | None:
    """ssl wants client certificates as files; kubeconfigs often inline them."""
    if not data:
        return None
    handle = tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False)
    with handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    return handle.name


def merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch that turns ``old`` into ``new`` (None when equal)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None if old == new else new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value)
    return patch or None


class Client:
    """One aiohttp session against the API server; use as ``async with Client() as api``."""

    def __init__(
        self, info: kopf.ConnectionInfo | None = None, on_write: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        # Told every object a create or patch returns: the watch cache keeps our own writes (caching.py).
        self._on_write = on_write
        info = info or _credentials
        if info is None:
            raise RuntimeError("no Kubernetes credentials: the operator has not logged in yet")
        self.server = info.server.rstrip("/")
        headers = {"Accept": "application/json"}
        if info.scheme and info.token:
            headers["Authorization"] = f"{info.scheme} {info.token}"
        elif info.token:
            headers["Authorization"] = f"Bearer {info.token}"
        ssl_context: ssl.SSLContext | bool = True
        if info.insecure:
            ssl_context = False
        elif info.ca_path or info.ca_data:
            cadata = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
            ssl_context = ssl.create_default_context(cafile=info.ca_path, cadata=cadata)
        certificate = info.certificate_path or _to_file(info.certificate_data)
        if certificate and isinstance(ssl_context, ssl.SSLContext):
            key = info.private_key_path or _to_file(info.private_key_data)
            ssl_context.load_cert_chain(certificate, key)
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=ssl_context),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def _request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        try:
            async with self._session.request(method, self.server + path, data=data, headers=headers) as response:
                text = await response.text()
                payload = json.loads(text) if text else {}
                if response.status >= 400:
                    code = int(payload.get("code", response.status)) if isinstance(payload, dict) else response.status
                    reason = str(payload.get("reason", "")) if isinstance(payload, dict) else ""
                    message = str(payload.get("message", text[:300])) if isinstance(payload, dict) else text[:300]
                    error = ConflictError if response.status == 409 else ApiError
                    raise error(code, reason, message)
                return payload if isinstance(payload, dict) else {}
        except aiohttp.ClientConnectionError as exc:
            raise UnreachableError(f"Kubernetes API {self.server} unreachable: {exc}") from exc

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self._request("GET", path)
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    async def create(self, collection: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self._written(await self._request("POST", collection, obj))

    async def patch(self, path: str, patch: Any, content_type: str = MERGE) -> dict[str, Any]:
        return self._written(await self._request("PATCH", path, patch, content_type))

    def _written(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self._on_write is not None and obj:
            self._on_write(obj)
        return obj

    async def delete(self, path: str) -> bool:
        """Delete; False when it was already gone."""
        try:
            await self._request("DELETE", path)
            return True
        except ApiError as exc:
            if exc.code == 404:
                return False
            raise
