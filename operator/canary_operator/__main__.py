"""``python -m canary_operator``: run the operator, cluster-wide, as the only instance."""

from __future__ import annotations

import argparse
import asyncio
import os

import kopf

from canary_operator import main as handlers  # noqa: F401  (registers the handlers)


def main() -> None:
    parser = argparse.ArgumentParser(prog="canary-operator", description=__doc__)
    parser.add_argument(
        "--log-format",
        choices=["json", "console"],
        default=os.environ.get("CANARY_LOG_FORMAT", "json"),
        help="JSON lines (default) or human-readable lines; also CANARY_LOG_FORMAT",
    )
    args = parser.parse_args()
    os.environ["CANARY_LOG_FORMAT"] = args.log_format
    kopf.configure(log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN)
    asyncio.run(kopf.operator(clusterwide=True, standalone=True))


if __name__ == "__main__":
    main()
