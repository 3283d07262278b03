"""
Fault injection: a test decides how the emulator answers chosen API requests.

Controllers break at the write itself: a status patch refused with 409, a 500 from an
overloaded server, a request that never gets an answer, or the controller's own process
dying between two writes. A :class:`Fault` names the requests it is about (verb, resource,
name, subresource, a predicate on the body) and which of them (the ``nth`` match and the
``count`` after it), and an effect:

- :class:`Respond`: answer with an error Status (409, 500, ...) without applying the request;
- :class:`Hang`: answer nothing until the client gives up or ``seconds`` have passed (then a
  504 Timeout, as the API server's own request deadline does), without applying it;
- :class:`Call`: run a callback when the request arrives (``Moment.ARRIVED``, before it is
  applied; with ``apply=False`` it is then dropped, as a write a dead client never finished
  sending) or once it is applied and before the answer is sent (``Moment.APPLIED``). The
  callback is how a test freezes or kills the process under test at that exact write.

Faults are registered on :attr:`FidelityEmulator.faults` (in the emulator's thread) or with
:meth:`canary_bench.cluster.EmulatedCluster.inject` (from any thread). Every fault whose
occurrence is due fires, in registration order, until one answers the request (``Respond``,
``Hang``, a dropping ``Call``): the faults after that one do not see it. So a recording
``Call`` registered first never hides a 409 registered after it. Faults sit above the
emulator's serving and below reactions declared with the kmock DSL, and see only resource
requests (not discovery).
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final

from canary_bench.emulation import bodies, routes

VERBS: Final = frozenset({"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"})
WRITES: Final = frozenset({"create", "delete", "deletecollection", "patch", "update"})
ANY: Final = "*"  # as a verb or a resource: matches every one


class Moment(enum.StrEnum):
    ARRIVED = "arrived"  # the request reached the server; nothing is applied yet
    APPLIED = "applied"  # the request is applied and stored; the answer is not sent yet


@dataclasses.dataclass(frozen=True)
class Request:
    """One API request as a fault sees it; ``name`` is taken from the body for a create."""

    verb: str
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    body: Any  # the decoded JSON body, None when there is none or it is not JSON
    content_type: str


@dataclasses.dataclass(frozen=True)
class Respond:
    """Answer with this error Status; the request is not applied."""

    code: int
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Hang:
    """Answer nothing for ``seconds`` (or until the client disconnects); then 504, not applied."""

    seconds: float


@dataclasses.dataclass(frozen=True)
class Call:
    """Run ``callback(request)`` in the emulator's thread at ``moment``.

    The callback must be quick: it runs in the emulator's event loop (sending a signal is quick).
    With ``apply=False`` (only at ``Moment.ARRIVED``) the request is then dropped: not applied,
    answered 503. At ``Moment.APPLIED`` only requests that succeeded count as occurrences.
    """

    callback: Callable[[Request], None]
    moment: Moment = Moment.ARRIVED
    apply: bool = True

    def __post_init__(self) -> None:
        if self.moment is Moment.APPLIED and not self.apply:
            raise ValueError("a request seen at Moment.APPLIED is already applied: apply=False makes no sense")


Effect = Respond | Hang | Call


def conflict(message: str = "the object has been modified; please apply your changes to the latest version") -> Respond:
    """The 409 of optimistic concurrency, as a write with a stale resourceVersion gets it."""
    return Respond(409, "Conflict", f"Operation cannot be fulfilled: {message} and try again")


def server_error(message: str = "injected failure") -> Respond:
    return Respond(500, "InternalError", f"Internal error occurred: {message}")


class Fault:
    """
    Which requests to affect, which of them, and how.

    ``resource`` is a plural (``deployments``), ``version/plural`` for the core group
    (``v1/services``) or ``group/version/plural`` (``apps/v1/deployments``); ``"*"`` as the verb
    or the resource matches every one (and every subresource). ``when`` is a
    predicate on the request; one that fails on the body's shape (``KeyError``, ``IndexError``,
    ``TypeError``) does not match. Of the matching requests, the ``nth`` (1-based) and the
    ``count - 1`` after it are affected; ``count=None`` affects all from the ``nth`` on. ``seen``
    counts matches until the fault is exhausted, ``fired`` the affected ones; :meth:`wait`
    blocks a test's thread until the fault has fired.
    """

    def __init__(
        self,
        verb: str,
        resource: str,
        effect: Effect,
        *,
        name: str | None = None,
        namespace: str | None = None,
        subresource: str | None = None,
        when: Callable[[Request], bool] | None = None,
        nth: int = 1,
        count: int | None = 1,
    ) -> None:
        if verb not in VERBS | {ANY}:
            raise ValueError(f"unknown verb {verb!r}; one of {sorted(VERBS)} or {ANY!r}")
        if nth < 1 or (count is not None and count < 1):
            raise ValueError(f"nth and count start at 1, got nth={nth} count={count}")
        parts = resource.split("/")
        if resource != ANY and (len(parts) > 3 or not all(parts)):
            raise ValueError(f"resource {resource!r} is not a plural, version/plural or group/version/plural")
        self.verb = verb
        self.resource = resource
        self.effect = effect
        self.name = name
        self.namespace = namespace
        self.subresource = subresource
        self.when = when
        self.nth = nth
        self.count = count
        self.seen = 0
        self.fired = 0
        self.requests: list[Request] = []  # the affected ones, in order
        self._fired = threading.Event()

    def __repr__(self) -> str:
        where = "/".join(p for p in (self.resource, self.name, self.subresource) if p)
        return f"Fault({self.verb} {where} #{self.nth}+{self.count}: {self.effect!r}, fired {self.fired})"

    def matches(self, request: Request) -> bool:
        *group_version, plural = self.resource.split("/")
        if group_version and (request.group, request.version) != tuple(([""] + group_version)[-2:]):
            return False
        if self.verb != ANY and request.verb != self.verb:
            return False
        if self.resource != ANY and (request.plural, request.subresource) != (plural, self.subresource):
            return False
        if self.name is not None and request.name != self.name:
            return False
        if self.namespace is not None and request.namespace != self.namespace:
            return False
        if self.when is not None:
            try:
                return bool(self.when(request))
            except (KeyError, IndexError, TypeError):
                return False
        return True

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.seen >= self.nth - 1 + self.count

    def take(self, request: Request) -> bool:
        """Count one matching request; True when this occurrence is one to affect."""
        self.seen += 1
        due = self.seen >= self.nth and (self.count is None or self.seen < self.nth + self.count)
        if due:
            self.fired += 1
            self.requests.append(request)
            self._fired.set()
        return due

    def wait(self, timeout: float = 30.0) -> Request:
        """Block until the fault has fired at least once; the first affected request."""
        if not self._fired.wait(timeout):
            raise TimeoutError(f"{self!r} did not fire within {timeout}s (matched {self.seen})")
        return self.requests[0]


class Faults:
    """
    The faults registered on one emulator, in registration order.

    Iteration and ``len`` see every registered fault. Serving a request looks only at the live
    faults (not exhausted) registered for its verb and plural, or for ``"*"``: a test that injects
    many faults, or a long run after its faults fired, does not slow down every other request.
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._order = itertools.count()
        # (verb or ANY, plural or ANY) -> {registration number: fault}, live faults only.
        self._live: dict[tuple[str, str], dict[int, Fault]] = {}

    def __iter__(self) -> Iterator[Fault]:
        return iter(list(self._faults))

    def __len__(self) -> int:
        return len(self._faults)

    @property
    def live(self) -> bool:
        """Whether any fault can still fire."""
        return bool(self._live)

    def add(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        if not fault.exhausted:
            plural = fault.resource if fault.resource == ANY else fault.resource.split("/")[-1]
            self._live.setdefault((fault.verb, plural), {})[next(self._order)] = fault
        return fault

    def remove(self, fault: Fault) -> None:
        if fault in self._faults:
            self._faults.remove(fault)
        self._forget(lambda registered: registered is fault)

    def clear(self) -> None:
        self._faults.clear()
        self._live.clear()

    def _forget(self, gone: Callable[[Fault], bool]) -> None:
        for key, bucket in list(self._live.items()):
            for number, registered in list(bucket.items()):
                if gone(registered):
                    del bucket[number]
            if not bucket:
                del self._live[key]

    def on_arrival(self, request: Request) -> Iterator[Fault]:
        """The faults that fire as this request arrives, one at a time (all but those acting once applied).

        Lazy: a fault is counted only when the caller asks for the next one, so that the faults
        after the one that answered the request do not see it.
        """
        return self._fire(request, applied=False)

    def on_applied(self, request: Request) -> Iterator[Fault]:
        """The faults whose callbacks run now that this request is applied."""
        return self._fire(request, applied=True)

    def _candidates(self, request: Request) -> list[tuple[int, tuple[str, str], Fault]]:
        found = []
        for key in ((request.verb, request.plural), (ANY, request.plural), (request.verb, ANY), (ANY, ANY)):
            found += [(number, key, fault) for number, fault in self._live.get(key, {}).items()]
        return sorted(found, key=lambda item: item[0])

    def _fire(self, request: Request, *, applied: bool) -> Iterator[Fault]:
        for number, key, fault in self._candidates(request):
            is_applied = isinstance(fault.effect, Call) and fault.effect.moment is Moment.APPLIED
            if is_applied != applied or fault.exhausted or not fault.matches(request):
                continue
            due = fault.take(request)
            if fault.exhausted and number in (bucket := self._live.get(key, {})):
                del bucket[number]
                if not bucket:
                    del self._live[key]
            if due:
                yield fault


def describe(verb: str, route: routes.Route, body: Any, content_type: str) -> Request:
    """The :class:`Request` a fault sees, from the parsed URL and the decoded body."""
    name = route.name
    if name is None and verb == "create" and isinstance(body, dict):
        name = bodies.resolve(body, "metadata", "name")
    return Request(
        verb=verb,
        group=route.group,
        version=route.version,
        plural=route.plural,
        namespace=route.namespace,
        name=name,
        subresource=route.subresource,
        body=body,
        content_type=content_type,
    )
