"""A local HTTP receiver's record of what it was sent (the fixture lives in tests/webhooks/conftest.py)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclasses.dataclass
class Receiver:
    url: str
    received: list[Received] = dataclasses.field(default_factory=list)
    # Answers in order, one per request: an HTTP status, or "hang" (never answers); the last one repeats.
    script: list[int | str] = dataclasses.field(default_factory=lambda: [200])

    def answer_for(self, n: int) -> int | str:
        return self.script[min(n, len(self.script) - 1)]
