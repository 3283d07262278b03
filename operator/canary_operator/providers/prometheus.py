"""Prometheus as a metric provider: the HTTP API's instant queries, over one shared aiohttp session.

A ``Pool`` holds one ``aiohttp.ClientSession`` (one connection pool) for every
rollout; ``Pool.provider`` hands out a cheap ``PrometheusProvider`` per check.
What a hostile or broken server can do to the operator is bounded here:

- time: a provider's queries together get the endpoint's timeout (capped by the
  operator's maximum); a server that hangs or trickles one byte a second costs
  that check at most that long, and the check is inconclusive;
- memory: an answer is read in chunks and aborted past the operator's maximum
  size (``Content-Length`` is not trusted); compression is neither asked for
  nor accepted, so no small answer inflates past the limit;
- other rollouts: each provider has its own small limit of queries in flight,
  and the connection pool has no global limit, so connections held open by one
  rollout's server never make another rollout's queries wait;
- the network: redirects are not followed (an allowed address cannot send the
  operator elsewhere), proxies from the environment are not used;
- the status: no answer body reaches an error message. The one exception is a
  well-formed Prometheus ``bad_data`` error (the query does not parse), whose
  message is reduced to 200 printable characters: it tells the user what is
  wrong with their PromQL.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import math
import re
import ssl
import time
from typing import Any

import aiohttp

from canary_operator import providers

_CHUNK = 64 * 1024
_PRINTABLE = re.compile(r"[^\x20-\x7e]+")


class Pool:
    """One HTTP session for every rollout's Prometheus queries; close it at shutdown."""

    def __init__(self, max_timeout: float = 30.0, max_response_bytes: int = 1 << 20, concurrency: int = 4) -> None:
        self.max_timeout = max_timeout
        self.max_response_bytes = max_response_bytes
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop, as aiohttp wants.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # No global limit: connections a hanging server holds must not make other servers' queries queue.
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=60),
                auto_decompress=False,
                trust_env=False,
                headers={"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": "canary-operator"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def provider(self, endpoint: providers.Endpoint) -> PrometheusProvider:
        """A provider for one check of one rollout: its own time budget and its own queries in flight."""
        return PrometheusProvider(self, endpoint)


@functools.lru_cache(maxsize=32)
def _ssl_context(ca_pem: str | None, insecure: bool) -> ssl.SSLContext | bool:
    """TLS settings per distinct CA (cached: building a context reads the system's CAs)."""
    if insecure:
        return False
    if ca_pem is None:
        return True
    try:
        return ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise providers.UnreachableError("the CA certificate (ca.crt) is not valid PEM") from exc


class PrometheusProvider:
    def __init__(self, pool: Pool, endpoint: providers.Endpoint) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self.timeout = max(0.0, min(endpoint.timeout, pool.max_timeout))
        self._slots = asyncio.Semaphore(pool.concurrency)
        self._deadline: float | None = None
        self._url = endpoint.address.rstrip("/") + "/api/v1/query"
        headers = dict(endpoint.headers)
        if endpoint.authorization is not None:
            headers["Authorization"] = endpoint.authorization
        self._headers = headers

    async def query(self, promql: str, at: datetime.datetime) -> float:
        return _single_value(await self._query(promql, at))

    async def query_by(self, promql: str, at: datetime.datetime, label: str) -> dict[str, float]:
        data = await self._query(promql, at)
        result = _vector(data)
        if not result:
            raise providers.NoDataError("no series")
        values = {}
        for series in result:
            metric = series.get("metric") if isinstance(series, dict) else None
            if not isinstance(metric, dict) or not isinstance(metric.get(label), str):
                raise providers.QueryError(f"a series without the label {label!r}")
            value = _sample(series)
            if math.isnan(value):
                raise providers.NoDataError(f"NaN for {label}={_shown(metric[label], 40)}")
            values[metric[label]] = value
        return values

    async def _query(self, promql: str, at: datetime.datetime) -> Any:
        """The ``data`` of a successful answer; a typed error otherwise."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.timeout
        shown = self.endpoint.shown
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + self._remaining()):
                async with self._slots:
                    if self._remaining() <= 0:
                        raise TimeoutError
                    status, content_type, body = await self._fetch(promql, at)
        except TimeoutError:
            raise providers.TimedOutError(
                f"Prometheus at {shown} did not answer within {self.timeout:g}s (the check's timeout)"
            ) from None
        except aiohttp.ClientConnectorCertificateError:
            raise providers.UnreachableError(f"Prometheus at {shown}: TLS certificate not trusted") from None
        except aiohttp.ClientSSLError:
            raise providers.UnreachableError(f"Prometheus at {shown}: TLS handshake failed") from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            raise providers.UnreachableError(f"Prometheus at {shown} unreachable: {reason}") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            raise providers.UnreachableError(f"Prometheus at {shown} closed the connection") from None
        except aiohttp.ClientResponseError:  # not valid HTTP; aiohttp's message quotes the bytes, so it is dropped
            raise providers.BadResponseError(f"Prometheus at {shown} answered invalid HTTP") from None
        except aiohttp.ClientPayloadError:
            raise providers.BadResponseError(f"Prometheus at {shown} sent a broken body") from None
        except aiohttp.ClientError as exc:  # anything else aiohttp raises: named by its type, never its text
            raise providers.UnreachableError(f"Prometheus at {shown}: request failed ({type(exc).__name__})") from None
        return _data(shown, status, content_type, body)

    def _remaining(self) -> float:
        assert self._deadline is not None
        return self._deadline - time.monotonic()

    async def _fetch(self, promql: str, at: datetime.datetime) -> tuple[int, str, bytes]:
        limit = self.pool.max_response_bytes
        shown = self.endpoint.shown
        async with self.pool.session().get(
            self._url,
            params={"query": promql, "time": f"{at.timestamp():.3f}"},
            headers=self._headers,
            ssl=_ssl_context(self.endpoint.ca_pem, self.endpoint.insecure_skip_verify),
            allow_redirects=False,
        ) as response:
            if response.headers.get("Content-Encoding", "identity").lower() != "identity":
                raise providers.BadResponseError(f"Prometheus at {shown} sent a compressed answer it was not asked for")
            if response.content_length is not None and response.content_length > limit:
                raise _too_large(shown, limit)
            chunks = []
            size = 0
            async for chunk in response.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise _too_large(shown, limit)  # leaving the block drops the connection: the rest is never read
                chunks.append(chunk)
            return response.status, response.headers.get("Content-Type", ""), b"".join(chunks)


def _too_large(shown: str, limit: int) -> providers.ResponseTooLargeError:
    return providers.ResponseTooLargeError(
        f"Prometheus at {shown} sent more than {limit} bytes (the operator's maximum answer size); aborted"
    )


def _shown(text: str, limit: int) -> str:
    return _PRINTABLE.sub(" ", text)[:limit].strip()


def _data(shown: str, status: int, content_type: str, body: bytes) -> Any:
    """What a Prometheus answer means, from its HTTP status and JSON envelope."""
    if 300 <= status < 400:
        raise providers.BadResponseError(
            f"Prometheus at {shown} answered with a redirect (HTTP {status}), not followed"
        )
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        envelope = None
    error_type = envelope.get("errorType") if isinstance(envelope, dict) else None
    kind = f", {_shown(error_type, 24)}" if isinstance(error_type, str) else ""
    if status in (401, 403):
        raise providers.QueryError(
            f"Prometheus at {shown} refused the credentials (HTTP {status});"
            " check analysis.prometheus.secretRef, or the operator's credentials for its default address"
        )
    if status >= 500 or status == 429:
        raise providers.UnreachableError(f"Prometheus at {shown} failed (HTTP {status}{kind})")
    if status >= 400:
        if error_type == "bad_data" and isinstance(envelope, dict) and isinstance(envelope.get("error"), str):
            raise providers.QueryError(f"Prometheus rejected the query: {_shown(envelope['error'], 200)}")
        raise providers.QueryError(f"Prometheus at {shown} rejected the query (HTTP {status}{kind})")
    if not isinstance(envelope, dict):
        what = _shown(content_type.split(";")[0], 40) or "no Content-Type"
        raise providers.BadResponseError(f"Prometheus at {shown} answered HTTP {status} that is not JSON ({what})")
    if envelope.get("status") != "success" or not isinstance(envelope.get("data"), dict):
        raise providers.BadResponseError(f"Prometheus at {shown} answered JSON that is not a Prometheus query result")
    return envelope["data"]


def _vector(data: Any) -> list[Any]:
    if data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        kind = data.get("resultType")
        if kind in ("matrix", "string"):
            raise providers.QueryError(f"the query returned a {kind}; it must return one number (an instant vector)")
        raise providers.BadResponseError("the answer is not a Prometheus query result")
    return list(data["result"])


def _sample(series: Any) -> float:
    """A sample's value as Prometheus writes it, ``[timestamp, "value"]``; BadResponseError when malformed."""
    pair = series.get("value") if isinstance(series, dict) else series
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)):
        raise providers.BadResponseError("a sample that is not [time, value]")
    try:
        value = float(pair[1])
    except ValueError:
        raise providers.BadResponseError("a sample whose value is not a number") from None
    if math.isinf(value):
        sign = "+" if value > 0 else "-"
        raise providers.NoDataError(f"{sign}Inf, not a measurement (a division by zero in the query?)")
    return value


def _single_value(data: Any) -> float:
    if data.get("resultType") == "scalar":
        value = _sample(data.get("result"))
    else:
        result = _vector(data)
        if not result:
            raise providers.NoDataError("no series")
        if len(result) > 1:
            raise providers.QueryError(f"query returned {len(result)} series; aggregate it to one (e.g. sum())")
        value = _sample(result[0])
    if math.isnan(value):
        raise providers.NoDataError("NaN (no requests in the window)")
    return value
