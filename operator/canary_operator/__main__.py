"""``python -m canary_operator``: run the operator, cluster-wide, as the only instance."""

from __future__ import annotations

import asyncio
import os

import kopf

from canary_operator import main as handlers  # noqa: F401  (registers the handlers)


def main() -> None:
    kopf.configure(
        log_format=kopf.LogFormat.JSON
        if os.environ.get("CANARY_LOG_FORMAT", "json") == "json"
        else kopf.LogFormat.PLAIN
    )
    asyncio.run(kopf.operator(clusterwide=True, standalone=True))


if __name__ == "__main__":
    main()
