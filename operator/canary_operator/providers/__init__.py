"""Metric providers: where measurements come from, behind one small Protocol.

A provider answers one instant query with one number, or raises a typed error
saying why it cannot. The judge turns those errors into *inconclusive*
verdicts: a missing number is never a pass.

A provider gets everything it needs to reach its server already resolved, as
an ``Endpoint`` (address, credentials, TLS, headers, time budget): reading
Secrets and applying the operator's defaults and allow-list happen at the I/O
edge (``endpoints``), never here. No error message carries a response body or
a credential: messages end up in the rollout's status, its Events and the logs.
"""

from __future__ import annotations

import dataclasses
import datetime
import urllib.parse
from typing import Protocol


class MetricsError(Exception):
    """A measurement could not be taken."""


class NoDataError(MetricsError):
    """The query ran but returned no sample, NaN (nothing to divide by) or an infinity."""


class UnreachableError(MetricsError):
    """The provider did not answer (connection refused, TLS failure, 5xx)."""


class TimedOutError(UnreachableError):
    """The provider did not answer within the check's time budget."""


class QueryError(MetricsError):
    """The provider refused the query (bad PromQL, credentials refused), or it returned more than one series."""


class BadResponseError(MetricsError):
    """The provider answered something that is not a Prometheus answer (HTML, garbage, wrong shape, redirect)."""


class ResponseTooLargeError(BadResponseError):
    """The answer was larger than the operator allows; it was aborted mid-stream."""


class MetricProvider(Protocol):
    async def query(self, promql: str, at: datetime.datetime) -> float:
        """The value of an instant query at ``at``; raises a MetricsError subclass otherwise."""
        ...

    async def query_by(self, promql: str, at: datetime.datetime, label: str) -> dict[str, float]:
        """An instant query returning several series: value by the given label (e.g. ``le``)."""
        ...


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A Prometheus as one rollout's checks reach it, with everything resolved.

    ``timeout`` bounds a whole check: all the queries of one provider together.
    ``authorization`` is the full header value (``Bearer …`` or ``Basic …``); it
    is kept out of ``repr`` so that logging an endpoint cannot leak it.
    """

    address: str
    timeout: float = 10.0
    authorization: str | None = dataclasses.field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    ca_pem: str | None = dataclasses.field(default=None, repr=False)
    insecure_skip_verify: bool = False

    @property
    def shown(self) -> str:
        return display_url(self.address)


def display_url(url: str) -> str:
    """The URL as it may be shown in a status, an Event or a log: without user, password, query or fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(an invalid URL)"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
