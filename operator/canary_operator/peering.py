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
from collections.abc import Mapping

# Priorities are this minus the start time in microseconds: positive, within an int64, and the
# earlier start the higher priority. Two replicas would need to start in the same microsecond to tie.
_PRIORITY_CEILING = 10**17
DEFAULT_LIFETIME = 15
MIN_LIFETIME = 2


class PeeringConfigError(ValueError):
    """A peering setting in the environment is not usable."""


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


def from_environment(env: Mapping[str, str], start_ns: int | None = None) -> Peering:
    """``CANARY_PEERING`` (the ClusterKopfPeering's name), ``CANARY_PEERING_PRIORITY``, ``CANARY_PEERING_LIFETIME``."""
    name = env.get("CANARY_PEERING", "").strip() or None
    raw_lifetime = env.get("CANARY_PEERING_LIFETIME", "").strip() or str(DEFAULT_LIFETIME)
    try:
        lifetime = int(raw_lifetime)
    except ValueError:
        raise PeeringConfigError(
            f"CANARY_PEERING_LIFETIME must be a whole number of seconds, not {raw_lifetime!r}"
        ) from None
    if lifetime < MIN_LIFETIME:
        # Kopf renews a record every max(1, lifetime - 5..10) s: below 2 s a healthy replica would expire.
        raise PeeringConfigError(f"CANARY_PEERING_LIFETIME must be at least {MIN_LIFETIME} seconds, not {lifetime}")
    raw_priority = env.get("CANARY_PEERING_PRIORITY", "").strip()
    if raw_priority:
        try:
            priority = int(raw_priority)
        except ValueError:
            raise PeeringConfigError(f"CANARY_PEERING_PRIORITY must be an integer, not {raw_priority!r}") from None
    elif name is None:
        priority = 0  # standalone: no peer to be ranked against
    else:
        priority = priority_at(time.time_ns() if start_ns is None else start_ns)
    return Peering(name=name, priority=priority, lifetime=lifetime)
