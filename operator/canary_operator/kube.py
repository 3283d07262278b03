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
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf
import yarl

USER_AGENT = "canary-operator"
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


class UnexpectedObjectError(ApiError):
    """The API answered a different object than the one asked for (a path that was not what it seemed)."""

    def __init__(self, asked: tuple[str, str], got: tuple[str, str]) -> None:
        super().__init__(
            500, "UnexpectedObject", f"asked for {asked[0]}/{asked[1]}, the API answered {got[0]}/{got[1]}"
        )


class InvalidNameError(ValueError):
    """A name that cannot be a path segment of the API (empty, ``.`` or ``..``)."""


_credentials: kopf.ConnectionInfo | None = None
_login: Callable[[], kopf.ConnectionInfo | None] | None = None


def use_credentials(info: kopf.ConnectionInfo, login: Callable[[], kopf.ConnectionInfo | None] | None = None) -> None:
    """Remember how Kopf logged in (the client uses the same server and identity) and how to do it again."""
    global _credentials, _login
    _credentials = info
    if login is not None:
        _login = login


def reload_credentials() -> kopf.ConnectionInfo | None:
    """Log in again, as Kopf does after a 401: a projected service-account token is rotated on disk
    (about hourly) and a kubeconfig may have been rewritten. None when there is no way to log in."""
    if _login is None:
        return None
    info = _login()
    if info is not None:
        use_credentials(info)
    return info


def segment(name: str) -> str:
    """One path segment, percent-encoded: ``../../other-ns/deployments/victim`` stays one (missing) name."""
    if name in ("", ".", ".."):
        raise InvalidNameError(f"{name!r} cannot be the name of an object")
    return urllib.parse.quote(name, safe="")


def object_path(prefix: str, plural: str, namespace: str, name: str | None = None) -> str:
    """An object's (or, without a name, its collection's) path, each name one quoted segment."""
    base = f"{prefix}/namespaces/{segment(namespace)}/{plural}"
    return base if name is None else f"{base}/{segment(name)}"


def deployment_path(namespace: str, name: str | None = None) -> str:
    return object_path("/apis/apps/v1", "deployments", namespace, name)


def service_path(namespace: str, name: str | None = None) -> str:
    return object_path("/api/v1", "services", namespace, name)


def events_path(namespace: str) -> str:
    return object_path("/api/v1", "events", namespace, None)


def secret_path(namespace: str, name: str) -> str:
    return object_path("/api/v1", "secrets", namespace, name)


def rollout_path(namespace: str, name: str) -> str:
    return object_path("/apis/canary.dev/v1alpha1", "canaryrollouts", namespace, name)


def identity_of_path(path: str) -> tuple[str, str] | None:
    """(namespace, name) of a namespaced object's path; None for collections and other paths."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[-4] == "namespaces":
        return urllib.parse.unquote(parts[-3]), urllib.parse.unquote(parts[-1])
    return None


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


def _authorization(info: kopf.ConnectionInfo) -> dict[str, str]:
    if info.scheme and info.token:
        return {"Authorization": f"{info.scheme} {info.token}"}
    if info.token:
        return {"Authorization": f"Bearer {info.token}"}
    return {}


class Client:
    """One aiohttp session against the API server; use as ``async with Client() as api``.

    On a 401 the client logs in again (``relogin``, by default ``reload_credentials``) and retries
    once with the new token: service-account tokens are rotated while the operator runs.
    """

    def __init__(
        self,
        info: kopf.ConnectionInfo | None = None,
        relogin: Callable[[], kopf.ConnectionInfo | None] | None = None,
        on_write: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        # Told every object a create or patch returns: the watch cache keeps our own writes (caching.py).
        self._on_write = on_write
        info = info or _credentials
        if info is None:
            raise RuntimeError("no Kubernetes credentials: the operator has not logged in yet")
        self.server = info.server.rstrip("/")
        self._relogin = relogin or reload_credentials
        self._auth = _authorization(info)
        # A user agent of its own: audit logs (and the bench's RBAC test) tell the operator's calls apart.
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
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
        try:
            return await self._send(method, path, body, content_type)
        except ApiError as exc:
            if exc.code != 401:
                raise
            info = self._relogin()
            if info is None or _authorization(info) == self._auth:
                raise
            self._auth = _authorization(info)
            return await self._send(method, path, body, content_type)

    async def _send(self, method: str, path: str, body: Any, content_type: str) -> dict[str, Any]:
        data = None if body is None else json.dumps(body)
        headers = {**self._auth, **({"Content-Type": content_type} if body is not None else {})}
        # encoded=True: the path is quoted already, and must not be normalised (no "..").
        url = yarl.URL(self.server + path, encoded=True)
        try:
            async with self._session.request(method, url, data=data, headers=headers) as response:
                text = await response.text()
                try:
                    payload = json.loads(text) if text else {}
                except ValueError:
                    payload = text
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
        """The object, or None when it does not exist; never another object than the path names."""
        try:
            found = await self._request("GET", path)
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise
        asked = identity_of_path(path)
        if asked is not None:
            meta = found.get("metadata") or {}
            got = (str(meta.get("namespace", "")), str(meta.get("name", "")))
            if got != asked:
                raise UnexpectedObjectError(asked, got)
        return found

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
