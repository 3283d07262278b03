"""Which replica acts: Kopf peering, with the longest-running live replica in charge.

Kopf pauses a replica (its watches and every daemon) while a live peer of higher priority is
listed in the ``ClusterKopfPeering`` object, and pauses *all* replicas while two share the top
priority, so each replica needs a priority of its own. Ours falls with the start time: the
replica running longest keeps acting, and a new or restarted one (a rolling update, a
rescheduled pod) joins paused, because Kopf starts a replica with mandatory peering paused until
it has read the peers. It takes over when the acting replica leaves: at once when that one stops
cleanly (Kopf removes its own record on exit), within ``lifetime`` seconds when it dies without
a word (its record expires). The rollouts then go on from their recorded status: nothing of a
rollout lives in an operator's memory.

Without a peering name the operator runs standalone, as a single replica must.
"""

from __future__ import annotations

import dataclasses
import time

# Priorities are this minus the start time in microseconds: positive, within an int64, and the
# earlier start the higher priority. Two replicas would need to start in the same microsecond to tie.
_PRIORITY_CEILING = 10**17
DEFAULT_LIFETIME = 15
# Kopf renews a replica's record every max(1, lifetime - 5..10) s: below 2 s a healthy replica would expire.
MIN_LIFETIME = 2
MAX_LIFETIME = 3600


@dataclasses.dataclass(frozen=True)
class Peering:
    """How this replica takes part in peering; ``name`` None means standalone."""

    name: str | None
    priority: int
    lifetime: int

    @property
    def standalone(self) -> bool:
        return self.name is None


def priority_at(start_ns: int) -> int:
    """The priority of a replica started at ``start_ns`` (nanoseconds since the epoch)."""
    return _PRIORITY_CEILING - start_ns // 1000


def chosen(name: str | None, lifetime: int, priority: int | None = None, start_ns: int | None = None) -> Peering:
    """A replica's peering: an explicit ``priority`` wins; else one from the start time (0 standalone)."""
    if priority is None:
        # Standalone there is no peer to be ranked against.
        priority = 0 if name is None else priority_at(time.time_ns() if start_ns is None else start_ns)
    return Peering(name=name, priority=priority, lifetime=lifetime)
