"""Structured logs: one JSON object per line, with the rollout and release on every line.

``bind_rollout`` puts namespace, name, revision and release id into the
context of the current task, so every line logged while handling a rollout
carries them, whoever logs it. The format ``console`` (setting ``log_format``)
gives human-readable lines instead.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from canary_operator import models


def configure(fmt: str = "json", level: int = logging.INFO) -> None:
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def bind_rollout(namespace: str, name: str, status: models.CanaryRolloutStatus | None = None) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(namespace=namespace, rollout=name)
    if status is not None:
        bind_release(status)


def bind_release(status: models.CanaryRolloutStatus) -> None:
    structlog.contextvars.bind_contextvars(revision=status.canary_revision, release=status.release_id)


def get() -> Any:
    return structlog.get_logger("canary_operator")
