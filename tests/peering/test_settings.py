"""Peering settings from the environment: who acts among the replicas, and how fast a dead one is replaced."""

from __future__ import annotations

import pytest

from canary_operator import config, peering


def peering_of(env: dict[str, str]) -> peering.Peering:
    return config.from_environ(env).peering


def test_without_a_peering_name_the_operator_runs_standalone() -> None:
    assert peering_of({}).standalone
    assert peering_of({"CANARY_PEERING": "  "}).standalone
    assert peering_of({}).priority == 0


def test_a_replica_started_earlier_outranks_one_started_later() -> None:
    first = peering.chosen("canary", peering.DEFAULT_LIFETIME, start_ns=1_764_000_000_000_000_000)
    second = peering.chosen("canary", peering.DEFAULT_LIFETIME, start_ns=1_764_000_000_000_001_000)
    assert first.priority > second.priority > 0
    assert first.priority < 2**63, "a priority fits the int64 the API server stores"
    assert peering_of({"CANARY_PEERING": "canary"}).priority > 0


def test_an_explicit_priority_and_lifetime_win() -> None:
    chosen = peering_of({"CANARY_PEERING": "canary", "CANARY_PEERING_PRIORITY": "7", "CANARY_PEERING_LIFETIME": "30"})
    assert (chosen.name, chosen.priority, chosen.lifetime) == ("canary", 7, 30)
    assert peering_of({"CANARY_PEERING": "canary"}).lifetime == peering.DEFAULT_LIFETIME


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CANARY_PEERING_LIFETIME": "1"}, "CANARY_PEERING_LIFETIME='1': must be an integer from 2 to 3600"),
        ({"CANARY_PEERING_LIFETIME": "15s"}, "CANARY_PEERING_LIFETIME='15s': must be an integer from 2 to 3600"),
        ({"CANARY_PEERING_PRIORITY": "high"}, "CANARY_PEERING_PRIORITY='high': must be an integer from 0 to"),
    ],
)
def test_unusable_settings_are_refused_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        peering_of({"CANARY_PEERING": "canary", **env})


def test_every_bad_setting_is_named_at_once() -> None:
    with pytest.raises(config.ConfigError) as raised:
        peering_of({"CANARY_PEERING_LIFETIME": "0", "CANARY_HTTP_PORT": "x"})
    assert "CANARY_PEERING_LIFETIME" in str(raised.value) and "CANARY_HTTP_PORT" in str(raised.value)
