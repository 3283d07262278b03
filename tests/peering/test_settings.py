"""Peering settings from the environment: who acts among the replicas, and how fast a dead one is replaced."""

from __future__ import annotations

import pytest

from canary_operator import peering


def test_without_a_peering_name_the_operator_runs_standalone() -> None:
    assert peering.from_environment({}).standalone
    assert peering.from_environment({"CANARY_PEERING": "  "}).standalone


def test_a_replica_started_earlier_outranks_one_started_later() -> None:
    first = peering.from_environment({"CANARY_PEERING": "canary"}, start_ns=1_764_000_000_000_000_000)
    second = peering.from_environment({"CANARY_PEERING": "canary"}, start_ns=1_764_000_000_000_001_000)
    assert first.name == second.name == "canary"
    assert first.priority > second.priority > 0
    assert first.priority < 2**63, "a priority fits the int64 the API server stores"


def test_an_explicit_priority_and_lifetime_win() -> None:
    chosen = peering.from_environment(
        {"CANARY_PEERING": "canary", "CANARY_PEERING_PRIORITY": "7", "CANARY_PEERING_LIFETIME": "30"}
    )
    assert (chosen.priority, chosen.lifetime) == (7, 30)
    assert peering.from_environment({"CANARY_PEERING": "canary"}).lifetime == peering.DEFAULT_LIFETIME


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CANARY_PEERING_LIFETIME": "1"}, "CANARY_PEERING_LIFETIME must be at least 2 seconds, not 1"),
        ({"CANARY_PEERING_LIFETIME": "15s"}, "CANARY_PEERING_LIFETIME must be a whole number of seconds, not '15s'"),
        ({"CANARY_PEERING_PRIORITY": "high"}, "CANARY_PEERING_PRIORITY must be an integer, not 'high'"),
    ],
)
def test_unusable_settings_are_refused_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(peering.PeeringConfigError, match=message):
        peering.from_environment({"CANARY_PEERING": "canary", **env})
