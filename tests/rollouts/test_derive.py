"""What ``rollouts.derive`` asks of the cluster from what the edge observed: the autoscaler's size and the Services.

The I/O edge only executes: under an HPA (``Observations.hpa_replicas``) the primary keeps the size the HPA set
and the canary is weighed against it; Services that the spec now wants otherwise than they were last made
(``Observations.services_digest`` against ``status.servicesDigest``) are made again, once.
"""

from __future__ import annotations

import dataclasses

import helpers
from helpers import V1, V2, World

from canary_operator import models, observations, rollouts

Phase = models.Phase


def stable() -> World:
    world = World(spec=helpers.example_spec(interval="10s"), template=V1)
    world.tick()
    world.tick()
    assert world.status.phase is Phase.STABLE
    return world


def canary_under_way() -> World:
    world = stable()
    world.template = V2
    world.tick()
    world.tick()
    assert world.status.phase is Phase.PROGRESSING and world.status.weight == 10
    return world


def seen(world: World, **changes: object) -> observations.Observations:
    return dataclasses.replace(world.observe(None), **changes)  # type: ignore[arg-type]


def of(actions: tuple[rollouts.Action, ...], kind: type) -> list[rollouts.Action]:
    return [a for a in actions if isinstance(a, kind)]


def test_under_an_autoscaler_the_primary_keeps_its_size_and_the_canary_is_weighed_against_it() -> None:
    world = canary_under_way()
    planned = rollouts.derive(world.spec, world.status, seen(world))
    assert of(planned, rollouts.EnsurePrimary) == [rollouts.EnsurePrimary(V1, "rev-1.0", 9)]
    assert of(planned, rollouts.SetWeight) == [rollouts.SetWeight(10, 9)]

    autoscaled = rollouts.derive(world.spec, world.status, seen(world, hpa_replicas=14))
    assert of(autoscaled, rollouts.EnsurePrimary) == [rollouts.EnsurePrimary(V1, "rev-1.0", None)]
    assert of(autoscaled, rollouts.SetWeight) == [rollouts.SetWeight(10, 14)]
    assert [type(a) for a in autoscaled] == [type(a) for a in planned], "the same actions, in the same order"


def test_a_rollback_given_back_while_blocked_keeps_the_autoscaled_size_of_the_primary() -> None:
    world = canary_under_way()
    conflict = rollouts.blocked(world.status, 1, models.Reason.OBJECT_CONFLICT, "not ours", world.now)
    gave_back = conflict.status.model_copy(
        update={"blocked": conflict.status.blocked.model_copy(update={"gave_back": True})}  # type: ignore[union-attr]
    )
    assert rollouts.give_back(gave_back, seen(world, hpa_replicas=14)) == (
        rollouts.SetWeight(0, 14),
        rollouts.EnsurePrimary(V1, "rev-1.0", None),
    )


def test_services_wanted_otherwise_than_last_made_are_made_again_after_the_rest() -> None:
    world = stable()
    status = world.status.model_copy(update={"services_digest": "port-80"})
    same = rollouts.derive(world.spec, status, seen(world, services_digest="port-80"))
    assert of(same, rollouts.EnsureServices) == []
    changed = rollouts.derive(world.spec, status, seen(world, services_digest="port-8080"))
    assert changed == (*same, rollouts.EnsureServices())
    assert of(rollouts.derive(world.spec, status, seen(world)), rollouts.EnsureServices) == [], "not compared"


def test_services_recorded_by_an_older_operator_without_a_digest_are_made_again() -> None:
    world = stable()
    assert world.status.services_digest is None
    actions = rollouts.derive(world.spec, world.status, seen(world, services_digest="port-80"))
    assert actions[-1] == rollouts.EnsureServices()


def test_the_takeover_makes_the_services_once_whatever_the_digest() -> None:
    world = World(spec=helpers.example_spec(interval="10s"), template=V1)
    first = rollouts.reconcile(world.spec, world.status, world.observe(None), world.now)
    assert first.status.phase is Phase.INITIALIZING
    actions = rollouts.derive(world.spec, first.status, seen(world, services_digest="port-80"))
    assert of(actions, rollouts.EnsureServices) == [rollouts.EnsureServices()]


def test_nothing_is_made_for_a_rollout_without_a_target_even_if_its_services_changed() -> None:
    world = stable()
    gone = seen(world, target=None, services_digest="port-8080")
    assert rollouts.derive(world.spec, world.status, gone) == ()
