"""Reads from watches: an idle rollout costs no API request, and a new revision wakes its rollout at once."""

from __future__ import annotations

import collections
import datetime
import time

import pytest

from canary_bench import stage as stages

pytestmark = [pytest.mark.usefixtures("prometheus_tools"), pytest.mark.slow]


def served(stage: stages.Stage) -> collections.Counter[str]:
    assert stage.cluster is not None
    cluster = stage.cluster
    return cluster.call(lambda: collections.Counter(cluster.emulator.verbs))


def test_an_idle_rollout_ticking_five_times_a_second_sends_no_request() -> None:
    with stages.Stage(tick_seconds=0.2) as stage:
        stage.wait_phase("Stable", timeout=30)
        assert stage.load is not None
        stage.load.stop()  # it reads the cluster too: from here on, only the operator talks to it
        time.sleep(2)  # the takeover's last writes
        ticked, before = ticks(stage), served(stage)
        time.sleep(3)  # about 15 idle ticks
        during = served(stage) - before
        assert ticks(stage) - ticked >= 5, "the rollout kept ticking"
        assert not {verb: n for verb, n in during.items() if verb != "watch"}, f"requests while idle: {dict(during)}"


def ticks(stage: stages.Stage) -> float:
    return sum(v for (name, _), v in stage.operator_metrics().items() if name == "canary_operator_reconciles_total")


def test_a_new_revision_wakes_its_rollout_long_before_the_next_tick() -> None:
    with stages.Stage(tick_seconds=60) as stage:  # ticks a minute apart: only the watch can be quick
        stage.wait_phase("Stable", timeout=90)
        stage.set_image("example/web:2.0")
        started = time.monotonic()
        stage.wait_for("CanaryStarted", lambda: stage.events("CanaryStarted"), timeout=30)
        assert time.monotonic() - started < 10


def test_a_canary_ticks_at_its_due_times_not_every_second_and_still_promotes_and_rolls_back() -> None:
    """Checks every 4 s, the continuous test every 8 s, the operator's default ticks (1 s busy, 30 s resync): the
    loop sleeps until the next check, reading, pause end or deadline, and wakes on changes (it ticked 1.5 times a
    second here before); the releases end as they did when it ticked every second."""
    plan = stages.Plan(
        interval="4s",
        continuous_interval="8s",
        steps=[{"setWeight": 20}, {"pause": {"duration": "16s"}}, {"setWeight": 50}, {"pause": {"duration": "4s"}}],
    )
    defaults = {"CANARY_TICK_SECONDS": "1", "CANARY_IDLE_TICK_SECONDS": "30"}
    with stages.Stage(plan=plan, operator_env=defaults) as stage:
        stage.wait_phase("Stable", timeout=60)
        stage.wait_traffic()
        stage.set_image("example/web:2.0")
        paused = stage.wait_status("the 16 s pause", lambda s: s.get("currentStepIndex") == 1, timeout=60)
        ticked = ticks(stage)
        over = stage.wait_status("the step after the pause", lambda s: s.get("currentStepIndex", 0) >= 2, timeout=60)
        held = (time_of(over["stepStartedAt"]) - time_of(paused["stepStartedAt"])).total_seconds()
        per_second = (ticks(stage) - ticked) / held
        assert held >= 16
        assert per_second < 0.6, f"{per_second:.2f} ticks per second over a {held:.1f} s pause checked every 4 s"
        waits = {
            dict(labels)["until"]: value
            for (name, labels), value in stage.operator_metrics().items()
            if name == "canary_operator_tick_wait_seconds_count"
        }
        assert waits.get("check", 0) >= 3 and waits.get("pause", 0) >= 1, f"slept until checks and the pause: {waits}"
        assert stage.wait_phase("Succeeded", timeout=60)["stableRevision"]
        assert stage.release("example/web:2.0-errors", timeout=60)["phase"] == "RolledBack"
        reasons = [e["reason"] for e in stage.events()]
        assert reasons.count("Promoted") == 1 and reasons.count("RolledBack") == 1


def time_of(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp)


def test_a_deleted_arm_is_made_again_long_before_the_next_resync() -> None:
    """Kopf drops a deleted Deployment from its index without a call: the operator's own DELETED handler wakes."""
    with stages.Stage(tick_seconds=60, operator_env={"CANARY_IDLE_TICK_SECONDS": "60"}) as stage:
        stage.wait_phase("Stable", timeout=90)
        stage.wait_for("web-canary", lambda: stage.deployment("web-canary"))
        stage.kubectl("delete", "deployment", "web-canary", "-n", "shop")
        started = time.monotonic()
        stage.wait_for("web-canary again", lambda: stage.deployment("web-canary"), timeout=30)
        assert time.monotonic() - started < 10
