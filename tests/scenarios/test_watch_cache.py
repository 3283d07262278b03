"""Reads from watches: an idle rollout costs no API request, and a new revision wakes its rollout at once."""

from __future__ import annotations

import collections
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
