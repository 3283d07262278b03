"""``python -m canary_operator``: run the operator as the only instance, cluster-wide or in the
namespaces given (``--namespace``).

The settings are read from the environment here, once (``config``); a bad value stops the
operator before it starts, with every problem named.
"""

from __future__ import annotations

import argparse
import asyncio

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
        help="watch only this namespace (repeatable); without it, every namespace (needs the ClusterRole)",
    )
    args = parser.parse_args()
    try:
        settings = config.from_environ()
    except config.ConfigError as exc:
        parser.exit(2, f"canary-operator: {exc}\n")
    if args.log_format is not None:
        settings = settings.with_log_format(args.log_format)
    kopf.configure(log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN)
    memo = kopf.Memo(settings=settings)
    if args.namespace:  # a namespaced install: Roles in these namespaces only, no cluster-wide write
        asyncio.run(kopf.operator(namespaces=args.namespace, standalone=True, memo=memo))
    else:
        asyncio.run(kopf.operator(clusterwide=True, standalone=True, memo=memo))


if __name__ == "__main__":
    main()
