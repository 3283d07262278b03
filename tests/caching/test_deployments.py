"""The Deployment cache: what it keeps, which version it answers, and whom a change wakes."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from canary_operator import caching, ownership, workloads

ROLLOUT = {"metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}}


def deployment(name: str, version: int, *, replicas: int = 3, arm: str | None = None) -> dict[str, Any]:
    labels = {"canary.dev/rollout": "web", "canary.dev/arm": arm} if arm else {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": f"uid-{name}",
            "generation": 2,
            "resourceVersion": str(version),
            "labels": labels,
            "annotations": {
                "canary.dev/revision": "abc",
                "kubectl.kubernetes.io/last-applied-configuration": "x" * 5000,
            },
            "ownerReferences": [workloads.owner_reference(ROLLOUT)] if arm else [],
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": "w:1"}]}},
        },
        "status": {
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "observedGeneration": 2,
            "conditions": [{"type": "Available", "status": "True", "message": "y" * 500}],
        },
    }


def indexed(*bodies: dict[str, Any]) -> dict[caching.Key, list[dict[str, Any]]]:
    return {(b["metadata"]["namespace"], b["metadata"]["name"]): [caching.trim(b)] for b in bodies}


def test_a_trimmed_deployment_reads_the_same_to_the_operator_and_drops_the_rest() -> None:
    full = deployment("web-primary", 5, arm="primary")
    trimmed = caching.trim(full)
    assert workloads.workload_of(trimmed) == workloads.workload_of(full)
    assert workloads.target_of(trimmed) == workloads.target_of(full)
    assert ownership.owned_by(trimmed, ROLLOUT) and ownership.owned_by(full, ROLLOUT)
    assert "managedFields" not in trimmed["metadata"]
    assert trimmed["metadata"]["annotations"] == {"canary.dev/revision": "abc"}
    assert "conditions" not in trimmed["status"]
    assert len(repr(trimmed)) < len(repr(full)) / 5


def test_a_trimmed_deployment_is_a_copy() -> None:
    full = deployment("web", 5)
    trimmed = caching.trim(full)
    full["spec"]["template"]["spec"]["containers"][0]["image"] = "w:2"
    assert trimmed["spec"]["template"]["spec"]["containers"][0]["image"] == "w:1"


def test_the_watch_answers_and_a_missing_deployment_is_none() -> None:
    cache = caching.Deployments(indexed(deployment("web", 5)))
    found = cache.get("shop", "web")
    assert found is not None and found["metadata"]["resourceVersion"] == "5"
    assert cache.get("shop", "web-primary") is None
    assert cache.get("other", "web") is None


def test_our_own_write_is_answered_until_the_watch_delivers_it() -> None:
    index = indexed(deployment("web-primary", 5, replicas=3, arm="primary"))
    cache = caching.Deployments(index)
    cache.remember(deployment("web-primary", 7, replicas=9, arm="primary"))
    assert cache.get("shop", "web-primary")["spec"]["replicas"] == 9  # type: ignore[index]
    index.update(indexed(deployment("web-primary", 6, replicas=3, arm="primary")))  # an older event comes in
    assert cache.get("shop", "web-primary")["spec"]["replicas"] == 9  # type: ignore[index]
    index.update(indexed(deployment("web-primary", 8, replicas=9, arm="primary")))  # ours, or newer
    assert cache.get("shop", "web-primary")["metadata"]["resourceVersion"] == "8"  # type: ignore[index]


def test_a_write_older_than_the_watch_is_ignored() -> None:
    cache = caching.Deployments(indexed(deployment("web", 9, replicas=3)))
    cache.remember(deployment("web", 8, replicas=0))
    assert cache.get("shop", "web")["spec"]["replicas"] == 3  # type: ignore[index]


def test_a_created_deployment_is_known_before_the_watch_sees_it() -> None:
    cache = caching.Deployments({})
    created = deployment("web-canary", 3, replicas=0, arm="canary")
    cache.remember(created)
    assert workloads.workload_of(cache.get("shop", "web-canary")) == workloads.workload_of(created)
    cache.deleted(created)  # its DELETED event, before the watch ever showed it
    assert cache.get("shop", "web-canary") is None


def test_the_live_index_is_read_at_every_call() -> None:
    index: dict[caching.Key, list[dict[str, Any]]] = {}
    cache = caching.Deployments()
    cache.use(index)
    assert cache.get("shop", "web") is None
    index.update(indexed(deployment("web", 1)))
    assert cache.get("shop", "web") is not None


async def test_a_change_of_an_arm_or_the_target_wakes_its_rollout_and_no_other() -> None:
    cache = caching.Deployments()
    web = cache.waker("shop", "web", target="web")
    api = cache.waker("shop", "api", target="api")
    cache.changed(deployment("web-canary", 2, arm="canary"))
    assert await web.sleep(5) is True
    cache.changed(deployment("web", 3))
    assert await web.sleep(5) is True
    assert await api.sleep(0.01) is False
    other = copy.deepcopy(deployment("web", 3))
    other["metadata"]["namespace"] = "elsewhere"
    cache.changed(other)
    assert await web.sleep(0.01) is False


async def test_a_rollout_retargeted_is_woken_by_its_new_target_only() -> None:
    cache = caching.Deployments()
    cache.waker("shop", "web", target="web")
    waker = cache.waker("shop", "web", target="web-v2")
    cache.changed(deployment("web", 3))
    assert await waker.sleep(0.01) is False
    cache.changed(deployment("web-v2", 3))
    assert await waker.sleep(5) is True


async def test_a_released_rollout_is_not_woken() -> None:
    cache = caching.Deployments()
    waker = cache.waker("shop", "web", target="web")
    cache.release("shop", "web")
    cache.changed(deployment("web", 3))
    assert await waker.sleep(0.01) is False


async def test_a_wake_up_during_the_tick_ends_the_next_sleep_at_once() -> None:
    waker = caching.Waker()
    waker.wake()  # arrives while the loop is busy, before it sleeps
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await waker.sleep(30) is True
    assert loop.time() - started < 1
    assert await waker.sleep(0.01) is False, "one wake-up wakes once"


def test_the_cache_keeps_the_targets_claim_so_a_claimed_target_is_not_claimed_again_every_tick() -> None:
    body = {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "annotations": {
                "canary.dev/claimed-by": "uid-1",
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
            },
        },
        "spec": {"replicas": 0},
    }
    assert caching.trim(body)["metadata"]["annotations"] == {"canary.dev/claimed-by": "uid-1"}


def rollout_body(generation: int = 1, rv: str = "10", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "canary.dev/v1alpha1",
        "kind": "CanaryRollout",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "generation": generation,
            "resourceVersion": rv,
            "annotations": {"kopf.dev/last-handled-configuration": "{}", **(annotations or {})},
        },
        "status": {"phase": "Progressing"},
    }


async def test_a_spec_edit_or_a_request_wakes_the_rollout_but_its_own_status_write_does_not() -> None:
    cache = caching.Deployments()
    waker = cache.waker("shop", "web", target="web")
    cache.deciding("shop", "web", rollout_body())
    own = rollout_body(rv="11")
    own["status"] = {"phase": "Progressing", "lastCheckAt": "2026-11-01T12:00:10+00:00"}
    own["metadata"]["annotations"]["kopf.dev/last-handled-configuration"] = '{"spec": {}}'  # Kopf's own writes too
    cache.rollout_changed("shop", "web", own)
    assert await waker.sleep(0.01) is False, "the loop decided this status itself: its schedule says when next"
    cache.rollout_changed("shop", "web", rollout_body(rv="12", annotations={"canary.dev/abort": "true"}))
    assert await waker.sleep(5) is True, "a request"
    cache.rollout_changed("shop", "web", rollout_body(generation=2, rv="13"))
    assert await waker.sleep(5) is True, "a spec edit"
    deleting = rollout_body(rv="14")
    deleting["metadata"]["deletionTimestamp"] = "2026-11-01T12:00:00Z"
    cache.rollout_changed("shop", "web", deleting)
    assert await waker.sleep(5) is True, "a deletion"


async def test_a_request_annotation_removed_wakes_the_rollout_that_acted_on_it() -> None:
    cache = caching.Deployments()
    waker = cache.waker("shop", "web", target="web")
    cache.deciding("shop", "web", rollout_body(annotations={"canary.dev/retry": "true"}))
    cache.rollout_changed("shop", "web", rollout_body(rv="11"))
    assert await waker.sleep(5) is True, "what it acted on is gone: the next tick may start what the request allowed"


def test_our_write_of_the_rollout_is_used_until_the_watch_delivers_it_then_only_one_copy_is_kept() -> None:
    def rollout(version: int, phase: str) -> dict[str, Any]:
        return {
            "kind": "CanaryRollout",
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": str(version), "generation": 1},
            "status": {"phase": phase},
        }

    cache = caching.Deployments()
    cache.wrote_rollout("shop", "web", rollout(12, "Progressing"))
    assert cache.rollout("shop", "web", rollout(11, "Stable"))["status"]["phase"] == "Progressing", "the watch lags"
    cache.wrote_rollout("shop", "web", rollout(10, "Old"))  # an older answer never replaces a newer one
    assert cache.rollout("shop", "web", rollout(11, "Stable"))["status"]["phase"] == "Progressing"

    cache.rollout_changed("shop", "web", rollout(12, "Progressing"))  # the watch delivers our write
    assert cache._rollouts_written == {}, "Kopf's body holds it now: the answer to our write is let go"
    assert cache.rollout("shop", "web", rollout(12, "Progressing"))["status"]["phase"] == "Progressing"

    cache.wrote_rollout("shop", "web", rollout(13, "Paused"))
    cache.release("shop", "web")
    assert cache._rollouts_written == {}, "a rollout's loop that ended holds nothing"


async def test_a_deployment_deleted_before_the_watch_delivered_our_write_is_gone_and_wakes_its_rollout() -> None:
    # The operator scaled the target (its answer is kept until the watch delivers it); the user deletes the target
    # first. Kopf drops it from the index: the answer kept must not make it exist for good.
    index = indexed(deployment("web", 5))
    cache = caching.Deployments(index)
    web = cache.waker("shop", "web", target="web")
    cache.remember(deployment("web", 6, replicas=0))
    del index[("shop", "web")]
    cache.deleted(deployment("web", 7, replicas=0))
    assert cache.get("shop", "web") is None
    assert await web.sleep(5) is True


def test_a_deletion_older_than_our_create_keeps_the_create() -> None:
    # The arm was deleted and the operator made it again; the DELETED event of the old one comes in after.
    cache = caching.Deployments({})
    cache.remember(deployment("web-canary", 9, replicas=0, arm="canary"))
    cache.deleted(deployment("web-canary", 8, arm="canary"))
    assert cache.get("shop", "web-canary") is not None
