"""A pre-rollout gate end to end at the I/O edge: reconciling.tick against the emulated cluster calls the
receiver about the new revision, records its answer in status.gates, and starts the canary only once it opens."""

from __future__ import annotations

import datetime

import helpers
from receivers import Receiver

from canary_bench import cluster as clusters
from canary_operator import endpoints, kube, reconciling


async def test_the_pre_rollout_gate_is_asked_about_the_new_revision_and_holds_the_start_until_it_opens(
    receiver: Receiver, api: kube.Client, cluster: clusters.EmulatedCluster, source: endpoints.Source
) -> None:
    cluster.create("/apis/apps/v1/namespaces/shop/deployments", helpers.deployment("web", 2))
    rollout = helpers.example_rollout()
    rollout["spec"]["webhooks"] = [{"name": "smoke", "type": "pre-rollout", "url": receiver.url, "retries": 0}]
    cluster.create("/apis/canary.dev/v1alpha1/namespaces/shop/canaryrollouts", rollout)
    now = helpers.T0

    async def tick_until(phase: str) -> dict[str, object]:
        nonlocal now
        for _ in range(50):
            await reconciling.tick(api, "shop", "web", metrics=source, now=now)
            now += datetime.timedelta(seconds=1)
            found = cluster.rollout("shop", "web")
            assert found is not None
            if found.get("status", {}).get("phase") == phase:
                return dict(found["status"])
            cluster.wait_for(  # the Deployment controller reports the primary ready after its delay
                lambda: (cluster.deployment("shop", "web-primary") or {}).get("status", {}).get("readyReplicas"),
                message="web-primary ready",
            )
        raise AssertionError(f"never {phase}")

    cluster.wait_for(lambda: (cluster.deployment("shop", "web") or {}).get("status", {}).get("readyReplicas"))
    stable = await tick_until("Stable")
    assert receiver.received == [], "no gate before there is a new revision"

    receiver.script = [412, 200]
    cluster.patch(
        "/apis/apps/v1/namespaces/shop/deployments/web",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example/web:2.0"}]}}}},
        kind="strategic",
    )
    await reconciling.tick(api, "shop", "web", metrics=source, now=now)
    held = cluster.rollout("shop", "web")
    assert held is not None and held["status"]["phase"] == "Stable"
    new_revision = held["status"]["gates"][0]["revision"]
    assert new_revision != stable["stableRevision"]
    assert held["status"]["gates"][0] | {"at": None, "since": None} == {
        "name": "smoke",
        "type": "pre-rollout",
        "revision": new_revision,
        "open": False,
        "at": None,
        "since": None,
        "attempts": 1,
        "code": 412,
        "message": "HTTP 412: nope",
    }
    assert held["status"]["message"].endswith("waiting for pre-rollout webhook(s): smoke (HTTP 412: nope)")
    assert receiver.received[0].body["revision"] == new_revision
    assert receiver.received[0].body["type"] == "pre-rollout"

    await reconciling.tick(api, "shop", "web", metrics=source, now=now + datetime.timedelta(seconds=1))
    assert len(receiver.received) == 1, "not asked again within the analysis interval"
    await reconciling.tick(api, "shop", "web", metrics=source, now=now + datetime.timedelta(seconds=11))
    started = cluster.rollout("shop", "web")
    assert started is not None and started["status"]["phase"] == "Progressing"
    assert started["status"]["canaryRevision"] == new_revision
    assert len(receiver.received) == 2
