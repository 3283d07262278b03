"""Which Prometheus a rollout's checks query, with which credentials: decided at the I/O edge.

A rollout's ``analysis.prometheus`` is combined here with the operator's
settings (``config.PrometheusSettings``) into a ``providers.Endpoint``:

- the address is the rollout's, or the operator's default; it must be under
  one of the operator's allowed addresses when that list is set (the SSRF
  control). A rollout without a usable address is refused *before* any
  request, with a specific condition reason (``AccessError.reason``);
- credentials come from a Secret in the rollout's namespace (``secretRef``),
  or, for the default address only, from the operator's credentials
  directory (a mounted Secret). The operator's credentials, CA and headers are
  never sent to an address a rollout chose;
- Secrets and files are read at every resolution, so a rotated token is used
  from the next check on.

Error messages name the Secret and the key, never a value.
"""

from __future__ import annotations

import base64
import binascii
import pathlib
import ssl
import urllib.parse
from collections.abc import Mapping

from canary_operator import config, kube, models, providers
from canary_operator.providers import prometheus

_KEYS = ("token", "username", "password", "ca.crt")


class AccessError(Exception):
    """The rollout's Prometheus cannot be used as configured; no request was sent."""

    reason = models.Reason.PROMETHEUS_CREDENTIALS


class NoAddressError(AccessError):
    reason = models.Reason.PROMETHEUS_ADDRESS_MISSING


class NotAllowedError(AccessError):
    reason = models.Reason.PROMETHEUS_NOT_ALLOWED


class CredentialsError(AccessError):
    reason = models.Reason.PROMETHEUS_CREDENTIALS


def _origin(parts: urllib.parse.SplitResult) -> tuple[str, str, int]:
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def is_under(address: str, base: str) -> bool:
    """Whether ``address`` is ``base`` or below it: same scheme, host and port, and a path inside base's."""
    one, two = urllib.parse.urlsplit(address), urllib.parse.urlsplit(base)
    inside = (one.path.rstrip("/") + "/").startswith(two.path.rstrip("/") + "/")
    return _origin(one) == _origin(two) and inside


def address(spec: models.PrometheusSpec, settings: config.PrometheusSettings) -> str:
    """The address a rollout's checks go to; NoAddressError or NotAllowedError, without any request."""
    chosen = spec.address or settings.address
    if chosen is None:
        raise NoAddressError(
            "analysis.prometheus.address is not set and the operator has no default Prometheus address"
        )
    if settings.allowed_addresses and not (
        chosen == settings.address or any(is_under(chosen, entry) for entry in settings.allowed_addresses)
    ):
        allowed = ", ".join(providers.display_url(entry) for entry in settings.allowed_addresses)
        raise NotAllowedError(
            f"Prometheus address {providers.display_url(chosen)} is not allowed by the operator (allowed: {allowed})"
        )
    return chosen


def credentials(data: Mapping[str, bytes], where: str) -> tuple[str | None, str | None]:
    """The Authorization header value and the CA (PEM) a Secret's keys give; CredentialsError when unusable."""
    token, username, password, ca = (data.get(key) for key in _KEYS)
    if token is not None and (username is not None or password is not None):
        raise CredentialsError(f"{where} has both token and username/password; keep one")
    if (username is None) != (password is None):
        raise CredentialsError(f"{where} needs both username and password for basic auth")
    authorization = None
    if token is not None:
        authorization = f"Bearer {_one_line(token, where, 'token')}"
    elif username is not None and password is not None:
        pair = _one_line(username, where, "username") + ":" + _one_line(password, where, "password")
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    ca_pem = None
    if ca is not None:
        try:
            ca_pem = ca.decode("ascii")
            ssl.create_default_context(cadata=ca_pem)
        except (UnicodeDecodeError, ssl.SSLError, ValueError):
            raise CredentialsError(f"{where}: ca.crt is not a PEM certificate") from None
    return authorization, ca_pem


def _one_line(value: bytes, where: str, key: str) -> str:
    try:
        text = value.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CredentialsError(f"{where}: {key} is not UTF-8 text") from None
    if not text or not text.isprintable():
        raise CredentialsError(f"{where}: {key} must be one line of printable text")
    return text


def _files(directory: pathlib.Path) -> dict[str, bytes]:
    return {key: (directory / key).read_bytes() for key in _KEYS if (directory / key).is_file()}


async def _secret(api: kube.Client, namespace: str, name: str) -> dict[str, bytes]:
    where = f"Secret {namespace}/{name}"
    try:
        body = await api.get(kube.secret_path(namespace, name))
    except kube.ApiError as exc:
        raise CredentialsError(f"{where} cannot be read ({exc.code} {exc.reason})") from None
    if body is None:
        raise CredentialsError(f"{where} (analysis.prometheus.secretRef) does not exist")
    data: dict[str, bytes] = {}
    for key, value in (body.get("data") or {}).items():
        if key in _KEYS:
            try:
                data[key] = base64.b64decode(str(value), validate=True)
            except binascii.Error:
                raise CredentialsError(f"{where}: {key} is not base64") from None
    if not data:
        raise CredentialsError(f"{where} has none of the keys {', '.join(_KEYS)}")
    return data


async def endpoint(
    api: kube.Client, namespace: str, spec: models.PrometheusSpec, settings: config.PrometheusSettings
) -> providers.Endpoint:
    """Everything one check needs to reach its Prometheus; an AccessError before any query otherwise."""
    chosen = address(spec, settings)
    default = chosen == settings.address
    timeout = models.parse_duration(spec.timeout) if spec.timeout is not None else settings.timeout
    headers = dict(settings.headers) if default else {}
    headers.update(spec.headers)
    insecure = spec.insecure_skip_verify
    if insecure is None:
        insecure = settings.insecure_skip_verify and default
    authorization = ca_pem = None
    if spec.secret_ref is not None:
        data = await _secret(api, namespace, spec.secret_ref.name)
        authorization, ca_pem = credentials(data, f"Secret {namespace}/{spec.secret_ref.name}")
    elif default and settings.credentials_dir is not None:
        try:
            data = _files(settings.credentials_dir)
        except OSError as exc:
            raise CredentialsError(f"the operator's Prometheus credentials cannot be read ({exc.strerror})") from None
        authorization, ca_pem = credentials(data, "the operator's Prometheus credentials")
    return providers.Endpoint(
        address=chosen,
        timeout=min(timeout, settings.max_timeout),
        authorization=authorization,
        headers=tuple(sorted(headers.items())),
        ca_pem=ca_pem,
        insecure_skip_verify=insecure,
    )


class Source:
    """The operator's way to its rollouts' metric providers: settings, and one connection pool for all."""

    def __init__(self, settings: config.PrometheusSettings) -> None:
        self.settings = settings
        self.pool = prometheus.Pool(
            max_timeout=settings.max_timeout,
            max_response_bytes=settings.max_response_bytes,
            concurrency=settings.concurrency,
        )

    def check(self, analysis: models.Analysis) -> None:
        """AccessError when the rollout's address is missing or not allowed (no I/O)."""
        address(analysis.prometheus, self.settings)

    async def provider(self, api: kube.Client, namespace: str, analysis: models.Analysis) -> providers.MetricProvider:
        """A provider for one check: credentials read now, its own time budget and queries in flight."""
        return self.pool.provider(await endpoint(api, namespace, analysis.prometheus, self.settings))

    async def close(self) -> None:
        await self.pool.close()
