"""The emulated cluster of tests/conftest.py (one per test, stopped within milliseconds), pods ready after 0.1 s."""

from __future__ import annotations

import pytest


@pytest.fixture
def ready_delay() -> float:
    """As the scenarios' Stage: a rollout takes visible time."""
    return 0.1
