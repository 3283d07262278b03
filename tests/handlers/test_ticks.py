"""How often a rollout is reconciled: fast while a canary runs, slower while idle."""

from __future__ import annotations

from canary_operator import config, main, models, rollouts


def decision(phase: models.Phase) -> rollouts.Decision:
    return rollouts.Decision(models.CanaryRolloutStatus(phase=phase))


def test_a_canary_under_way_ticks_fast_and_an_idle_rollout_slowly() -> None:
    settings = config.Settings(tick_seconds=1, idle_tick_seconds=5)
    for phase in (models.Phase.PROGRESSING, models.Phase.PAUSED, models.Phase.PROMOTING, models.Phase.INITIALIZING):
        assert main._tick_seconds(decision(phase), settings) == 1
    for phase in (models.Phase.STABLE, models.Phase.SUCCEEDED, models.Phase.ROLLED_BACK):
        assert main._tick_seconds(decision(phase), settings) == 5
    assert main._tick_seconds(None, settings) == 1, "after a failed tick, retry soon"
