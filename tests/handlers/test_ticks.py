"""How long a rollout's loop sleeps after a tick: until its next due time, the busy tick when it cannot tell."""

from __future__ import annotations

import datetime

from canary_operator import config, main, models, rollouts

SETTINGS = config.Settings(tick_seconds=1, idle_tick_seconds=5)


def decision(phase: models.Phase, due: rollouts.Due | None = None) -> rollouts.Decision:
    return rollouts.Decision(models.CanaryRolloutStatus(phase=phase), due=due)


def test_a_decision_that_did_not_tell_its_due_time_ticks_fast_under_way_and_slowly_when_idle() -> None:
    now = datetime.datetime.now(datetime.UTC)
    for phase in (models.Phase.PROGRESSING, models.Phase.PAUSED, models.Phase.PROMOTING, models.Phase.INITIALIZING):
        assert main._wait(decision(phase), now, SETTINGS) == rollouts.Wait(1, "unsure")
    for phase in (models.Phase.STABLE, models.Phase.SUCCEEDED, models.Phase.ROLLED_BACK):
        assert main._wait(decision(phase), now, SETTINGS) == rollouts.Wait(5, "resync")
    assert main._wait(None, now, SETTINGS) == rollouts.Wait(1, "retry"), "after a failed tick, retry soon"


def test_a_canary_sleeps_until_its_next_check_but_no_longer_than_the_idle_resync() -> None:
    now = datetime.datetime.now(datetime.UTC)
    soon = rollouts.Due(now + datetime.timedelta(seconds=3), "check", models.Phase.PROGRESSING)
    wait = main._wait(decision(models.Phase.PROGRESSING, soon), now, SETTINGS)
    assert wait.until == "check" and 2.5 < wait.seconds <= 3 + rollouts.schedule.MARGIN_SECONDS
    later = rollouts.Due(now + datetime.timedelta(minutes=10), "deadline", models.Phase.PROGRESSING)
    assert main._wait(decision(models.Phase.PROGRESSING, later), now, SETTINGS) == rollouts.Wait(5, "resync")
