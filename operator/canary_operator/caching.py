"""Deployments from a watch, shared by all rollouts, and the wake-ups of the rollouts' loops.

Each tick used to GET three Deployments, so the API load grew with the number of rollouts even
when nothing happened. Here one watch (Kopf's ``@kopf.index`` on Deployments, see ``main.py``)
keeps every Deployment trimmed to the fields the operator reads, and each rollout's loop sleeps
until a Deployment it depends on changes, its CanaryRollout changes, or its next check is due.

Kopf fills the index from a full LIST before any daemon starts, and removes deleted objects
itself; this module adds two things to it:

- *write-through*: the operator's own writes are remembered until the watch delivers them (or a
  newer version), so the tick after a write never acts on the version before it;
- *wake-ups*: a change of a Deployment wakes the rollouts that depend on it (its arms carry the
  ``canary.dev/rollout`` label; a target is registered by its rollout's loop); a change of a
  CanaryRollout wakes its loop when it is one the loop has not decided on yet (a spec edit, a
  request annotation, a deletion), not for a status write (the loop's own, which it decided).

No Kopf import: the index is read as the mapping of stores it is.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from canary_operator import models, ownership, workloads

Key = tuple[str, str]  # (namespace, name)
Body = dict[str, Any]

_ANNOTATIONS = frozenset({workloads.REVISION_ANNOTATION, ownership.CLAIM_ANNOTATION})

# What the operator reads of a Deployment (workloads.py, reconciling.py); the rest (managedFields,
# the last-applied annotation that repeats the whole object, conditions) is dropped to save memory.
_METADATA = ("name", "namespace", "uid", "generation", "resourceVersion", "labels", "ownerReferences")
_SPEC = frozenset(
    {
        "replicas",
        "selector",
        "template",
        "strategy",
        "minReadySeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
    }
)
_STATUS = ("replicas", "readyReplicas", "updatedReplicas", "availableReplicas", "observedGeneration")


_REQUESTS = frozenset(kind.annotation for kind in models.Request)


def decided_on(rollout: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a CanaryRollout a tick decides on, besides the status: the spec (by its generation), the
    request annotations, the deletion. Kopf's own annotations and the status are left out."""
    meta = rollout.get("metadata") or {}
    requests = sorted((k, str(v)) for k, v in (meta.get("annotations") or {}).items() if k in _REQUESTS)
    return meta.get("generation"), meta.get("deletionTimestamp"), tuple(requests)


def trim(body: Mapping[str, Any]) -> Body:
    """A Deployment reduced to what the operator reads (a deep copy: the watch's body is Kopf's)."""
    meta = body.get("metadata") or {}
    trimmed: Body = {
        "apiVersion": body.get("apiVersion", "apps/v1"),
        "kind": body.get("kind", "Deployment"),
        "metadata": {key: copy.deepcopy(meta[key]) for key in _METADATA if key in meta},
        "spec": {key: copy.deepcopy(value) for key, value in (body.get("spec") or {}).items() if key in _SPEC},
        "status": {key: value for key, value in (body.get("status") or {}).items() if key in _STATUS},
    }
    # The operator's own annotations: the arms' revision, and the target's claim (ownership.py).
    kept = {key: value for key, value in (meta.get("annotations") or {}).items() if key in _ANNOTATIONS}
    if kept:
        trimmed["metadata"]["annotations"] = kept
    return trimmed


def _version(body: Mapping[str, Any] | None) -> int:
    """The resourceVersion as a number, -1 when absent or not numeric.

    Kubernetes calls resourceVersions opaque; kube-apiserver's are etcd revisions, and ordering two
    versions of one object is all this needs. A non-numeric one makes the watch's copy win.
    """
    try:
        return int(((body or {}).get("metadata") or {}).get("resourceVersion") or -1)
    except (TypeError, ValueError):
        return -1


def _unseen(written: dict[Key, Any], key: Key, watched: Mapping[str, Any] | None) -> Any:
    """Our own written copy of ``key`` while the watch has not delivered it (or a newer version), else None;
    once the watch has caught up, the copy is dropped: the watch's is the only one kept."""
    mine = written.get(key)
    if mine is not None and watched is not None and _version(watched) >= _version(mine):
        del written[key]
        return None
    return mine


class Waker:
    """One rollout's alarm: set by changes of what it depends on, awaited with a deadline."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep until woken or ``seconds`` passed; True when woken. A wake-up during the tick counts."""
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                await self._event.wait()
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True


class Deployments:
    """The Deployments as the watch last saw them, plus the operator's own writes not yet seen there.

    ``index`` maps ``(namespace, name)`` to a collection of trimmed bodies (Kopf's ``Index`` of
    ``Store``s: one body per key here). Only the loop that serves the operator touches this.
    """

    def __init__(self, index: Mapping[Key, Collection[Body]] | None = None) -> None:
        self._index: Mapping[Key, Collection[Body]] = index if index is not None else {}
        self._written: dict[Key, Body] = {}
        self._wakers: dict[Key, Waker] = {}  # by (namespace, rollout)
        self._targets: dict[Key, set[Key]] = {}  # (namespace, target) -> rollouts releasing it
        self._target_of: dict[Key, str] = {}  # (namespace, rollout) -> its target
        self._decided: dict[Key, tuple[Any, ...]] = {}  # (namespace, rollout) -> ``decided_on`` at its last tick
        # (namespace, rollout) -> the API's answer to our last write of the CanaryRollout, until the watch delivers it
        self._rollouts_written: dict[Key, Mapping[str, Any]] = {}

    def use(self, index: Mapping[Key, Collection[Body]]) -> None:
        """Read from ``index`` from now on (Kopf hands the same live index to every daemon)."""
        self._index = index

    def get(self, namespace: str, name: str) -> Body | None:
        """The newest known version of a Deployment; None when it does not exist (as far as known)."""
        key = (namespace, name)
        watched = next(iter(self._index.get(key, ())), None)
        written = _unseen(self._written, key, watched)
        return watched if written is None else written

    def remember(self, body: Mapping[str, Any]) -> None:
        """The API's answer to one of our own writes: newer than the watch until the watch delivers it.

        Anything but a Deployment is ignored, so that every write of the API client can be passed here.
        """
        if body.get("kind") != "Deployment":
            return
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if _version(body) > max(_version(self.get(*key)), -1):
            self._written[key] = trim(body)

    def deleted(self, body: Mapping[str, Any]) -> None:
        """A Deployment's DELETED event: Kopf drops it from the index; an answer to our own earlier write of it,
        not yet delivered by the watch, must not keep it alive in its place. Then its rollouts are woken."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        written = self._written.get(key)
        if written is not None and _version(written) <= _version(body):  # not a newer create of ours
            del self._written[key]
        self.changed(body)

    def wrote_rollout(self, namespace: str, rollout: str, body: Mapping[str, Any]) -> None:
        """The API's answer to our own write of a CanaryRollout: newer than the watched body until delivered."""
        key = (namespace, rollout)
        if _version(body) > _version(self._rollouts_written.get(key)):
            self._rollouts_written[key] = body

    def rollout(self, namespace: str, rollout: str, watched: Mapping[str, Any]) -> Mapping[str, Any]:
        """The newer of the watched CanaryRollout and our last write of it (held only until the watch catches up)."""
        written = _unseen(self._rollouts_written, (namespace, rollout), watched)
        return watched if written is None else written

    # ------------------------------------------------------------ wake-ups

    def waker(self, namespace: str, rollout: str, target: str) -> Waker:
        """The alarm of a rollout's loop; changes of ``target`` and of the rollout's arms set it."""
        key = (namespace, rollout)
        previous = self._target_of.get(key)
        if previous != target:  # first call, or the spec's targetRef changed
            if previous is not None:
                self._targets.get((namespace, previous), set()).discard(key)
            self._targets.setdefault((namespace, target), set()).add(key)
            self._target_of[key] = target
        return self._wakers.setdefault(key, Waker())

    def deciding(self, namespace: str, rollout: str, body: Mapping[str, Any]) -> None:
        """The rollout's loop starts a tick on ``body``: a change of the CanaryRollout that leaves what it
        decides on as it is (the tick's own status write, Kopf's annotations) will not wake it again."""
        self._decided[(namespace, rollout)] = decided_on(body)

    def rollout_changed(self, namespace: str, rollout: str, body: Mapping[str, Any]) -> None:
        """A watch event of the CanaryRollout: wake its loop unless the loop already decided on what changed."""
        _unseen(self._rollouts_written, (namespace, rollout), body)  # delivered: one copy (Kopf's) is enough
        if self._decided.get((namespace, rollout)) != decided_on(body):
            self.wake(namespace, rollout)

    def release(self, namespace: str, rollout: str) -> None:
        """The rollout's loop ended: no more wake-ups for it."""
        key = (namespace, rollout)
        self._wakers.pop(key, None)
        self._decided.pop(key, None)
        self._rollouts_written.pop(key, None)
        target = self._target_of.pop(key, None)
        if target is not None:
            self._targets.get((namespace, target), set()).discard(key)

    def wake(self, namespace: str, rollout: str) -> None:
        waker = self._wakers.get((namespace, rollout))
        if waker is not None:
            waker.wake()

    def changed(self, body: Mapping[str, Any]) -> None:
        """A watch event for a Deployment: wake the rollouts it belongs to."""
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        for rollout in self._dependents(namespace, str(meta.get("name")), meta.get("labels") or {}):
            self.wake(namespace, rollout)

    def _dependents(self, namespace: str, name: str, labels: Mapping[str, str]) -> Iterable[str]:
        owner = labels.get(workloads.ROLLOUT_LABEL)
        if owner is not None:
            yield owner
        for _, rollout in self._targets.get((namespace, name), ()):
            if rollout != owner:
                yield rollout
