"""Argo CD's health check and actions for CanaryRollout, run by a real Lua 5.1 (Argo CD's gopher-lua dialect).

The Lua comes out of the Helm chart as Argo CD would read it (the rendered
argocd-cm keys), and runs against CanaryRollouts whose status the real state
machine wrote in every phase.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import helm_python as helm
import helpers
import pytest
import yaml
from helpers import V1, V2, World, record
from lupa import lua51

from canary_operator import models, rollouts

Phase = models.Phase
Verdict = models.Verdict
CHART = helpers.ROOT / "charts" / "canary-operator"
HEALTH_KEY = "resource.customizations.health.canary.dev_CanaryRollout"
ACTIONS_KEY = "resource.customizations.actions.canary.dev_CanaryRollout"


@pytest.fixture(scope="module")
def argocd_cm() -> Iterator[dict[str, str]]:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render({"argocd": {"enabled": True}}, name="canary", namespace="canary-system")
    found = [
        obj
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for obj in yaml.safe_load_all(text)
        if obj and obj["kind"] == "ConfigMap" and HEALTH_KEY in obj.get("data", {})
    ]
    assert len(found) == 1
    assert found[0]["metadata"]["namespace"] == "argocd"
    yield found[0]["data"]


def _to_lua(lua: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def _from_lua(value: Any) -> Any:
    if lua51.lua_type(value) != "table":
        return value
    items = dict(value.items())
    if items and all(isinstance(k, int) for k in items) and sorted(items) == list(range(1, len(items) + 1)):
        return [_from_lua(items[i]) for i in range(1, len(items) + 1)]
    return {k: _from_lua(v) for k, v in items.items()}


def _without_empties(value: Any) -> Any:
    """Lua has one empty table for [] and {}: compare what is left."""
    if isinstance(value, dict):
        return {k: _without_empties(v) for k, v in value.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_without_empties(v) for v in value]
    return value


def run_lua(code: str, obj: dict[str, Any]) -> Any:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = _to_lua(lua, obj)
    return _from_lua(lua.execute(code))


def rollout(world: World, generation: int = 1, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    body = helpers.example_rollout()
    body["metadata"]["generation"] = generation
    if spec is not None:
        body["spec"] = spec
    body["status"] = world.status.to_wire()
    return body


def world_at(
    done: Callable[[models.CanaryRolloutStatus], bool], verdict: Verdict, steps: Any = None, **spec: Any
) -> World:
    raw = copy.deepcopy(helpers.example_rollout()["spec"])
    raw["analysis"]["interval"] = "10s"
    raw.update(spec)
    if steps is not None:
        raw["steps"] = steps
    world = World(spec=models.parse_spec(raw), template=V1)
    world.tick()
    world.tick()
    world.template = V2
    for _ in range(200):
        if done(world.status):
            return world
        due = rollouts.needs(world.spec, world.status, world.revision(world.template), world.now).check
        world.tick(record(verdict, at=world.now) if due else None)
    raise AssertionError(f"never reached; at {world.status.phase}")


def health(argocd_cm: dict[str, str], obj: dict[str, Any]) -> tuple[str, str]:
    answer = run_lua(argocd_cm[HEALTH_KEY], obj)
    return answer["status"], answer["message"]


def test_health_of_every_phase(argocd_cm: dict[str, str]) -> None:
    initializing = World(spec=helpers.example_spec(), template=V1)
    initializing.tick()
    assert initializing.status.phase is Phase.INITIALIZING
    stable = world_at(lambda s: s.phase is Phase.STABLE, Verdict.PASS)
    stable.template = V1
    stable.tick()
    progressing = world_at(lambda s: s.phase is Phase.PROGRESSING and s.last_check is not None, Verdict.PASS)
    held = world_at(lambda s: s.phase is Phase.PAUSED, Verdict.INCONCLUSIVE)
    promoting = world_at(lambda s: s.phase is Phase.PROMOTING, Verdict.PASS)
    succeeded = world_at(lambda s: s.phase is Phase.SUCCEEDED, Verdict.PASS)
    rolled_back = world_at(lambda s: s.phase is Phase.ROLLED_BACK, Verdict.FAIL)

    expected = [
        (initializing, "Progressing", "taking over web: web-primary starting at revision rev-1.0"),
        (stable, "Healthy", "web-primary serves revision rev-1.0"),
        (progressing, "Progressing", "step 2/4: analysing revision rev-2.0"),
        (held, "Suspended", "held: error-rate Inconclusive"),
        (promoting, "Progressing", "promoting revision rev-2.0"),
        (succeeded, "Healthy", "revision rev-2.0 promoted"),
        (rolled_back, "Degraded", "RolledBack: revision rev-2.0 rolled back: error-rate Fail"),
    ]
    for world, status, message in expected:
        assert health(argocd_cm, rollout(world)) == (status, message), world.status.phase


def test_health_of_a_pause_step_waiting_for_promote_is_suspended(argocd_cm: dict[str, str]) -> None:
    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}]
    world = world_at(lambda s: s.current_step_index == 1 and s.weight_settled_at is not None, Verdict.PASS, steps=steps)
    world.tick()
    spec = {**helpers.example_rollout()["spec"], "steps": steps}
    assert health(argocd_cm, rollout(world, spec=spec)) == ("Suspended", "Paused at step 2: waiting for promote")


def test_health_of_a_manual_pause_is_suspended_and_of_a_missed_deadline_degraded(argocd_cm: dict[str, str]) -> None:
    paused = world_at(lambda s: s.phase is Phase.PROGRESSING and s.weight_settled_at is not None, Verdict.PASS)
    paused.request(models.Request.PAUSE)
    paused.tick()
    assert paused.status.hold is models.Hold.REQUEST
    assert health(argocd_cm, rollout(paused)) == (
        "Suspended",
        "paused by request at weight 10%; annotate canary.dev/resume",
    )

    stuck = world_at(
        lambda s: s.phase is Phase.PAUSED and s.hold is models.Hold.DEADLINE,
        Verdict.INCONCLUSIVE,
        progressDeadline="30s",
        progressDeadlineAbort=False,
    )
    status, message = health(argocd_cm, rollout(stuck))
    assert status == "Degraded" and message.startswith("ProgressDeadlineExceeded: held: ")


def test_health_when_the_spec_is_invalid_or_not_yet_observed(argocd_cm: dict[str, str]) -> None:
    stable = world_at(lambda s: s.phase is Phase.STABLE, Verdict.PASS)
    message = "invalid spec: spec.steps: too short"
    blocked = rollouts.blocked(stable.status, 2, models.Reason.INVALID_SPEC, message, helpers.T0)
    stable.status = blocked.status
    assert health(argocd_cm, rollout(stable, generation=2)) == (
        "Degraded",
        "InvalidSpec: invalid spec: spec.steps: too short",
    )
    assert health(argocd_cm, rollout(stable, generation=3)) == (
        "Progressing",
        "Waiting for the operator to observe generation 3",
    )
    fresh = helpers.example_rollout()
    assert health(argocd_cm, fresh) == ("Progressing", "Waiting for the operator")


def actions(argocd_cm: dict[str, str]) -> dict[str, Any]:
    return dict(yaml.safe_load(argocd_cm[ACTIONS_KEY]))


@pytest.mark.parametrize(
    ("action", "key", "value"),
    [
        ("promote", "canary.dev/promote", "true"),
        ("promote-full", "canary.dev/promote", "full"),
        ("abort", "canary.dev/abort", "true"),
        ("retry", "canary.dev/retry", "true"),
        ("pause", "canary.dev/pause", "true"),
        ("resume", "canary.dev/resume", "true"),
    ],
)
def test_each_action_writes_its_request_annotation_and_nothing_else(
    argocd_cm: dict[str, str], action: str, key: str, value: str
) -> None:
    definition = next(d for d in actions(argocd_cm)["definitions"] if d["name"] == action)
    world = world_at(lambda s: s.phase is Phase.PROGRESSING, Verdict.PASS)
    before = rollout(world)
    before["metadata"]["annotations"] = {"team": "shop"}

    after = run_lua(definition["action.lua"], copy.deepcopy(before))

    assert after["metadata"]["annotations"] == {"team": "shop", key: value}
    after["metadata"]["annotations"] = before["metadata"]["annotations"]
    assert _without_empties(after) == _without_empties(before)
    bare = rollout(world)
    assert run_lua(definition["action.lua"], bare)["metadata"]["annotations"] == {key: value}


def test_the_offered_actions_follow_the_phase(argocd_cm: dict[str, str]) -> None:
    discovery = actions(argocd_cm)["discovery.lua"]
    worlds = {
        Phase.PROGRESSING: world_at(lambda s: s.phase is Phase.PROGRESSING, Verdict.PASS),
        Phase.PAUSED: world_at(lambda s: s.phase is Phase.PAUSED, Verdict.INCONCLUSIVE),
        Phase.ROLLED_BACK: world_at(lambda s: s.phase is Phase.ROLLED_BACK, Verdict.FAIL),
        Phase.SUCCEEDED: world_at(lambda s: s.phase is Phase.SUCCEEDED, Verdict.PASS),
    }
    enabled = {
        phase: sorted(name for name, o in run_lua(discovery, rollout(world)).items() if not o["disabled"])
        for phase, world in worlds.items()
    }
    assert enabled == {
        Phase.PROGRESSING: ["abort", "pause", "promote", "promote-full"],
        Phase.PAUSED: ["abort", "promote", "promote-full", "resume"],
        Phase.ROLLED_BACK: ["retry"],
        Phase.SUCCEEDED: [],
    }
    assert sorted(d["name"] for d in actions(argocd_cm)["definitions"]) == sorted(run_lua(discovery, {"metadata": {}}))


def test_the_chart_renders_no_argocd_keys_unless_asked() -> None:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render({}, name="canary", namespace="canary-system")
    assert not any(HEALTH_KEY in text for text in rendered.values())


def test_the_documented_argocd_cm_patch_is_what_the_chart_renders(argocd_cm: dict[str, str]) -> None:
    documented = yaml.safe_load((helpers.ROOT / "docs" / "argocd-cm-patch.yaml").read_text())
    assert documented == {"data": argocd_cm}, "regenerate docs/argocd-cm-patch.yaml from the chart (see docs/argocd.md)"
