"""Reaching the cluster as kubectl does: the kubeconfig, its context, and plain HTTPS.

The plugin is a separate short-lived process that kubectl starts; it reads the
same kubeconfig (``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``),
the same context (``--context``, else ``current-context``) and the context's
namespace, and talks to the API with the standard library only, so that
``kubectl canary`` starts in a fraction of a second and needs neither Kopf nor
a Kubernetes client library.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import pathlib
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import yaml


class ConfigError(Exception):
    """The kubeconfig is missing, unreadable, or lacks the context asked for."""


class ApiError(Exception):
    """The API server answered with an error Status (kubectl prints these as 'Error from server')."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


class UnreachableError(Exception):
    """No answer from the API server."""


@dataclasses.dataclass(frozen=True)
class Connection:
    server: str
    namespace: str
    headers: Mapping[str, str]
    ssl_context: ssl.SSLContext | None


def _files(explicit: str | None) -> list[pathlib.Path]:
    if explicit:
        return [pathlib.Path(explicit)]
    listed = os.environ.get("KUBECONFIG")
    if listed:
        return [pathlib.Path(p) for p in listed.split(os.pathsep) if p]
    return [pathlib.Path.home() / ".kube" / "config"]


def _merged(paths: list[pathlib.Path], explicit: bool) -> dict[str, Any]:
    """kubectl's merge of several kubeconfig files: the first file to set a name or a field wins."""
    merged: dict[str, Any] = {"clusters": {}, "users": {}, "contexts": {}, "current-context": None}
    found = False
    for path in paths:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            if explicit:
                raise ConfigError(f"stat {path}: no such file or directory") from None
            continue
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read kubeconfig {path}: {exc}") from exc
        found = True
        for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for entry in loaded.get(section) or []:
                merged[section].setdefault(entry.get("name"), (path, entry.get(inner) or {}))
        merged["current-context"] = merged["current-context"] or loaded.get("current-context")
    if not found:
        raise ConfigError("no kubeconfig found: set KUBECONFIG or pass --kubeconfig")
    return merged


def _data_or_file(base: pathlib.Path, entry: Mapping[str, Any], key: str) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        return (base.parent / str(entry[key])).expanduser().read_bytes()
    return None


def _to_file(data: bytes) -> str:
    """ssl loads client certificates from files only."""
    handle = tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False)
    with handle:
        handle.write(data)
    return handle.name


def _exec_token(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run an exec credential plugin (cloud logins) and answer its ExecCredential status."""
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []}}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {
            "apiVersion": spec.get("apiVersion", "client.authentication.k8s.io/v1"),
            "kind": "ExecCredential",
            "spec": {"interactive": False},
        }
    )
    try:
        done = subprocess.run(
            [spec["command"], *(spec.get("args") or [])],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        )
        status: dict[str, Any] = json.loads(done.stdout).get("status") or {}
        return status
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise ConfigError(f"exec credential plugin {spec.get('command')!r} failed: {exc}") from exc


def connect(kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None) -> Connection:
    """The server, identity and namespace a kubectl with the same flags would use."""
    config = _merged(_files(kubeconfig), explicit=bool(kubeconfig))
    name = context or config["current-context"]
    if not name:
        raise ConfigError("current-context is not set: pass --context")
    if name not in config["contexts"]:
        raise ConfigError(f'context "{name}" does not exist')
    _, ctx = config["contexts"][name]
    if ctx.get("cluster") not in config["clusters"]:
        raise ConfigError(f'cluster "{ctx.get("cluster")}" of context "{name}" does not exist')
    cluster_file, cluster = config["clusters"][ctx["cluster"]]
    user_file, user = config["users"].get(ctx.get("user"), (cluster_file, {}))
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise ConfigError(f'cluster "{ctx["cluster"]}" has no server')

    headers = {"Accept": "application/json", "User-Agent": "kubectl-canary"}
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = pathlib.Path(user["tokenFile"]).read_text().strip()
    client_cert = _data_or_file(user_file, user, "client-certificate")
    client_key = _data_or_file(user_file, user, "client-key")
    if user.get("exec"):
        credential = _exec_token(user["exec"])
        token = credential.get("token") or token
        if credential.get("clientCertificateData"):
            client_cert = credential["clientCertificateData"].encode()
            client_key = str(credential.get("clientKeyData", "")).encode()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif user.get("username"):
        basic = base64.b64encode(f"{user['username']}:{user.get('password', '')}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"

    ssl_context = None
    if server.startswith("https://"):
        ssl_context = ssl.create_default_context()
        ca = _data_or_file(cluster_file, cluster, "certificate-authority")
        if cluster.get("insecure-skip-tls-verify"):
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
        elif ca:
            ssl_context.load_verify_locations(cadata=ca.decode())
        if client_cert and client_key:
            ssl_context.load_cert_chain(_to_file(client_cert), _to_file(client_key))
    return Connection(server, namespace or ctx.get("namespace") or "default", headers, ssl_context)


class Client:
    """Synchronous JSON calls against the API server of a Connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        handlers: list[urllib.request.BaseHandler] = []
        if connection.ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=connection.ssl_context))
        self._opener = urllib.request.build_opener(*handlers)

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.connection.headers)
        if data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.connection.server + path, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            with exc:
                text = exc.read().decode(errors="replace")
            try:
                status = json.loads(text)
            except ValueError:
                status = {}
            if not isinstance(status, dict):
                status = {}
            raise ApiError(
                int(status.get("code") or exc.code), str(status.get("reason") or ""), str(status.get("message") or text)
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UnreachableError(
                f"The connection to the server {urllib.parse.urlsplit(self.connection.server).netloc} was refused"
                f" - did you specify the right host or port? ({reason})"
            ) from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def patch(self, path: str, patch: Any) -> Any:
        return self.request("PATCH", path, patch, "application/merge-patch+json")
