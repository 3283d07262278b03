"""The operator's settings: read from the environment once, at startup, and validated there.

Every module that needs a setting receives this object (or the part of it it
needs); none reads ``os.environ`` itself. A bad value stops the operator at
startup with every problem named, instead of surfacing as a crash in the
middle of a rollout. The chart's values map onto these variables one to one
(``charts/canary-operator/values.yaml``).

=====================================  ==========  ===================================================
Variable                               Default     Meaning
=====================================  ==========  ===================================================
CANARY_TICK_SECONDS                    1           Seconds between ticks of a rollout under way whose next due
                                                   time cannot be told (else it sleeps until that time).
CANARY_IDLE_TICK_SECONDS               30          Longest sleep of a rollout's loop: the resync (watches and
                                                   due times wake it sooner).
CANARY_LOG_FORMAT                      json        ``json`` (one object per line) or ``console``.
CANARY_HTTP_PORT                       8080        /metrics, /healthz, /readyz; 0 turns them off.
CANARY_HTTP_HOST                       0.0.0.0     Address the HTTP endpoints listen on.
CANARY_PROMETHEUS_ADDRESS              (none)      Prometheus for rollouts that name none.
CANARY_PROMETHEUS_TIMEOUT              10s         A check's query time when the rollout gives none.
CANARY_PROMETHEUS_MAX_TIMEOUT          30s         No rollout's timeout goes beyond this.
CANARY_PROMETHEUS_MAX_RESPONSE_BYTES   1048576     A larger answer is aborted mid-stream.
CANARY_PROMETHEUS_CONCURRENCY          4           Queries one rollout may have in flight at once.
CANARY_PROMETHEUS_ALLOWED_ADDRESSES    (any)       Comma-separated base URLs rollouts may query.
CANARY_PROMETHEUS_CREDENTIALS_DIR      (none)      Files ``token`` or ``username``/``password``, and
                                                   ``ca.crt``, for the default address only.
CANARY_PROMETHEUS_INSECURE_SKIP_VERIFY false       Skip TLS verification of the default address.
CANARY_PROMETHEUS_HEADERS              {}          JSON object of headers for the default address.
CANARY_WEBHOOK_ALLOWED_URLS            (any)       Comma-separated base URLs webhooks and notifications
                                                   may call (the SSRF control for them).
CANARY_PEERING                         (none)      The ClusterKopfPeering of the replicas; none: standalone.
CANARY_PEERING_LIFETIME                15          Seconds a silent replica's record lives (handover time).
CANARY_PEERING_PRIORITY                (start)     Fixed priority; by default the earlier start acts.
=====================================  ==========  ===================================================
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Literal, TypeVar

from canary_operator import models, peering

T = TypeVar("T")
LogFormat = Literal["json", "console"]


class ConfigError(ValueError):
    """One or more settings are invalid; the message names each variable and what is wrong with it."""


@dataclasses.dataclass(frozen=True)
class PrometheusSettings:
    """The operator's side of Prometheus access: defaults for rollouts, and limits no rollout can lift.

    ``allowed_addresses`` is the SSRF control: when it is not empty, the operator
    sends a query only to an address under one of these base URLs (same scheme,
    host and port; path below the entry's), or to the default address. A
    rollout naming any other address gets the condition ``PrometheusNotAllowed``
    and no request is made. Empty means any address a rollout names.

    The credentials, TLS and header defaults are used only for the default
    address: a rollout that names another address never receives them.
    """

    address: str | None = None
    timeout: float = 10.0
    max_timeout: float = 30.0
    max_response_bytes: int = 1 << 20
    concurrency: int = 4
    allowed_addresses: tuple[str, ...] = ()
    credentials_dir: pathlib.Path | None = None
    insecure_skip_verify: bool = False
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Settings:
    tick_seconds: float = 1.0
    idle_tick_seconds: float = 30.0
    log_format: LogFormat = "json"
    http_port: int = 8080
    http_host: str = "0.0.0.0"
    prometheus: PrometheusSettings = PrometheusSettings()
    # Base URLs webhooks and notifications may call; empty: any (see ``webhooks.Policy``).
    webhook_allowed_urls: tuple[str, ...] = ()
    peering: peering.Peering = peering.Peering(name=None, priority=0, lifetime=peering.DEFAULT_LIFETIME)

    def with_log_format(self, fmt: LogFormat) -> Settings:
        return dataclasses.replace(self, log_format=fmt)


class _Reader:
    """Reads variables, collecting every problem before raising, so one start shows them all."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def get(self, name: str, default: T, parse: Callable[[str], T]) -> T:
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            self.problems.append(f"{name}={raw!r}: {exc}")
            return default

    def require(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


def _number(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not math.isfinite(value) or not low < value <= high:
            raise ValueError(f"must be a number above {low:g} and at most {high:g}")
        return value

    return parse


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value: int | None = int(raw)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return parse


def _duration(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            seconds = models.parse_duration(raw)
        except ValueError:  # malformed or beyond what a duration may spell (at most 4 parts of 5 digits)
            seconds = -1.0
        if not low < seconds <= high:
            raise ValueError(f"must be a duration above {low:g}s and at most {high:g}s")
        return seconds

    return parse


def _log_format(raw: str) -> LogFormat:
    if raw == "json":
        return "json"
    if raw == "console":
        return "console"
    raise ValueError("must be json or console")


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError("must be true or false")


def _addresses(raw: str) -> tuple[str, ...]:
    return tuple(models.check_prometheus_address(part.strip()) for part in raw.split(",") if part.strip())


def _headers(raw: str) -> tuple[tuple[str, str], ...]:
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise ValueError('must be a JSON object of strings, e.g. {"X-Scope-OrgID": "team-a"}')
    return tuple(sorted(models.check_headers(parsed).items()))


def _directory(raw: str) -> pathlib.Path:
    path = pathlib.Path(raw)
    if not path.is_dir():
        raise ValueError("not a directory")
    return path


def from_environ(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings the environment gives; ConfigError naming every bad variable."""
    read = _Reader(os.environ if environ is None else environ)
    day = 86400.0
    tick = read.get("CANARY_TICK_SECONDS", 1.0, _number(0, 3600))
    idle = read.get("CANARY_IDLE_TICK_SECONDS", 30.0, _number(0, 3600))
    json_lines: LogFormat = "json"
    log_format = read.get("CANARY_LOG_FORMAT", json_lines, _log_format)
    http_port = read.get("CANARY_HTTP_PORT", 8080, _integer(0, 65535))
    http_host = read.get("CANARY_HTTP_HOST", "0.0.0.0", str)
    address = read.get("CANARY_PROMETHEUS_ADDRESS", None, models.check_prometheus_address)
    max_timeout = read.get("CANARY_PROMETHEUS_MAX_TIMEOUT", 30.0, _duration(0, day))
    timeout = read.get("CANARY_PROMETHEUS_TIMEOUT", min(10.0, max_timeout), _duration(0, day))
    read.require(
        timeout <= max_timeout,
        f"CANARY_PROMETHEUS_TIMEOUT ({timeout:g}s) is above CANARY_PROMETHEUS_MAX_TIMEOUT ({max_timeout:g}s)",
    )
    prometheus = PrometheusSettings(
        address=address,
        timeout=timeout,
        max_timeout=max_timeout,
        max_response_bytes=read.get("CANARY_PROMETHEUS_MAX_RESPONSE_BYTES", 1 << 20, _integer(1024, 1 << 30)),
        concurrency=read.get("CANARY_PROMETHEUS_CONCURRENCY", 4, _integer(1, 64)),
        allowed_addresses=read.get("CANARY_PROMETHEUS_ALLOWED_ADDRESSES", (), _addresses),
        credentials_dir=read.get("CANARY_PROMETHEUS_CREDENTIALS_DIR", None, _directory),
        insecure_skip_verify=read.get("CANARY_PROMETHEUS_INSECURE_SKIP_VERIFY", False, _boolean),
        headers=read.get("CANARY_PROMETHEUS_HEADERS", (), _headers),
    )
    no_urls: tuple[str, ...] = ()
    hooks = read.get("CANARY_WEBHOOK_ALLOWED_URLS", no_urls, _addresses)
    peers = peering.chosen(
        name=read.get("CANARY_PEERING", None, str),
        lifetime=read.get(
            "CANARY_PEERING_LIFETIME", peering.DEFAULT_LIFETIME, _integer(peering.MIN_LIFETIME, peering.MAX_LIFETIME)
        ),
        priority=read.get("CANARY_PEERING_PRIORITY", None, _integer(0, 2**63 - 1)),
    )
    if read.problems:
        raise ConfigError("invalid operator settings: " + "; ".join(read.problems))
    return Settings(
        tick_seconds=tick,
        idle_tick_seconds=idle,
        log_format=log_format,
        http_port=http_port,
        http_host=http_host,
        prometheus=prometheus,
        webhook_allowed_urls=hooks,
        peering=peers,
    )
