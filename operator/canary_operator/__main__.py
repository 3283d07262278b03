"""``python -m canary_operator``: run the operator cluster-wide (standalone, or as one of several peered
replicas) or, standalone, in the namespaces given (``--namespace``).

The settings are read from the environment here, once (``config``, with ``peering`` for who acts
among replicas); a bad value stops the operator before it starts, with every problem named.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import kopf

from canary_operator import config
from canary_operator import main as handlers  # noqa: F401  (registers the handlers)


def main() -> None:
    parser = argparse.ArgumentParser(prog="canary-operator", description=__doc__)
    parser.add_argument(
        "--log-format",
        choices=["json", "console"],
        default=None,
        help="JSON lines (default) or human-readable lines; overrides CANARY_LOG_FORMAT",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NAME",
        help="watch only this namespace (repeatable; standalone); without it, every namespace (needs the ClusterRole)",
    )
    parser.add_argument(
        "--peering",
        default=None,
        help="the ClusterKopfPeering shared by the replicas (only the oldest live one acts); "
        "empty: standalone, one replica only; overrides CANARY_PEERING",
    )
    args = parser.parse_args()
    environ = dict(os.environ) if args.peering is None else {**os.environ, "CANARY_PEERING": args.peering}
    try:
        settings = config.from_environ(environ)
    except config.ConfigError as exc:
        parser.exit(2, f"canary-operator: {exc}\n")
    peers = settings.peering
    if args.log_format is not None:
        settings = settings.with_log_format(args.log_format)
    kopf.configure(log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN)
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.peering.lifetime = peers.lifetime
    memo = kopf.Memo(settings=settings)
    if args.namespace:  # a namespaced install: Roles in these namespaces only, no cluster-wide write
        asyncio.run(kopf.operator(namespaces=args.namespace, standalone=True, settings=kopf_settings, memo=memo))
    elif peers.standalone:
        asyncio.run(kopf.operator(clusterwide=True, standalone=True, settings=kopf_settings, memo=memo))
    else:
        asyncio.run(
            kopf.operator(
                clusterwide=True, peering_name=peers.name, priority=peers.priority, settings=kopf_settings, memo=memo
            )
        )


if __name__ == "__main__":
    main()
