"""How often a rollout is reconciled: fast while a canary runs, slower while idle."""

from __future__ import annotations

import pytest

from canary_operator import main, models, rollouts


def decision(phase: models.Phase) -> rollouts.Decision:
    return rollouts.Decision(models.CanaryRolloutStatus(phase=phase))


def test_a_canary_under_way_ticks_fast_and_an_idle_rollout_slowly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_TICK_SECONDS", "1")
    monkeypatch.setenv("CANARY_IDLE_TICK_SECONDS", "5")
    for phase in (models.Phase.PROGRESSING, models.Phase.PAUSED, models.Phase.PROMOTING, models.Phase.INITIALIZING):
        assert main._tick_seconds(decision(phase)) == 1
    for phase in (models.Phase.STABLE, models.Phase.SUCCEEDED, models.Phase.ROLLED_BACK):
        assert main._tick_seconds(decision(phase)) == 5
    assert main._tick_seconds(None) == 1, "after a failed tick, retry soon"
