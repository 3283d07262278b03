"""
A Kubernetes API emulator faithful enough for the operator, Kopf and kubectl.

No kube-apiserver can run on the build machines, and raw ``kmock.KubernetesEmulator``
differs from the real API exactly where an operator depends on it: resource versions and
optimistic concurrency, generations, the status subresource, strategic merge patches,
selectors, watch resumption, Tables for kubectl (the gaps are listed in
``/work/shared/reference/test-environment.md``). :class:`FidelityEmulator` closes them.

Each behaviour follows the documented API semantics; where the emulator is knowingly
simpler than a real cluster, :class:`FidelityEmulator` says so.

The modules, each importing only those listed before it: ``bodies`` and ``times`` (plain data),
``errors`` (failures as a v1 Status), ``routes`` (resource URLs), ``selecting``, ``patching``,
``schemas``, ``tables``, ``admission`` (defaults and rules of objects), ``faults`` (what tests
inject), and ``emulator`` (the store and the HTTP API). What the rest of the bench uses is re-exported here.
"""

from canary_bench.emulation.emulator import CRDS, NAMESPACES, FidelityEmulator
from canary_bench.emulation.errors import ApiError, Cause
from canary_bench.emulation.faults import Call, Effect, Fault, Hang, Moment, Request, Respond, conflict, server_error
from canary_bench.emulation.tables import PrinterColumn
from canary_bench.emulation.times import format_time, now, parse_time

__all__ = [
    "CRDS",
    "NAMESPACES",
    "ApiError",
    "Call",
    "Cause",
    "Effect",
    "Fault",
    "FidelityEmulator",
    "Hang",
    "Moment",
    "PrinterColumn",
    "Request",
    "Respond",
    "conflict",
    "format_time",
    "now",
    "parse_time",
    "server_error",
]
