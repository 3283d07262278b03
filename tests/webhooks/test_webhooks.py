"""Webhooks against a local receiver: payloads, bounded timeouts and retries, header secrets, gates."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import helpers
import pytest
from helpers import T0
from receivers import Receiver

from canary_bench import cluster as clusters
from canary_operator import gating, kube, models, webhooks

Sleeps = tuple[list[float], Callable[[float], Any]]


def hook(url: str, **fields: Any) -> models.Webhook:
    return models.Webhook.model_validate({"name": "load-test", "type": "rollout", "url": url, **fields})


def midway() -> models.CanaryRolloutStatus:
    check = helpers.record(models.Verdict.PASS, canary_requests=312.4, primary_requests=2808.0)
    return models.CanaryRolloutStatus(
        phase=models.Phase.PROGRESSING,
        canary_revision="rev-2.0",
        stable_revision="rev-1.0",
        release_id="web-rev-2.0-20261101T120000Z",
        current_step_index=1,
        step="2/4",
        weight=10,
        last_verdict="Pass",
        last_check=check,
    )


async def test_a_webhook_receives_the_rollout_revision_step_and_last_verdict(
    receiver: Receiver, session: aiohttp.ClientSession, api: kube.Client, sleeps: Sleeps
) -> None:
    record = await webhooks.call(
        session, api, "shop", "web", hook(receiver.url, metadata={"cmd": "hey -z 1m"}), midway(), T0, sleeps[1]
    )

    assert (record.open, record.code, record.attempts) == (True, 200, 1)
    [got] = receiver.received
    assert got.headers["Content-Type"] == "application/json"
    body = got.body
    assert {k: body[k] for k in ("name", "namespace", "type", "phase", "revision", "step", "weight")} == {
        "name": "web",
        "namespace": "shop",
        "type": "rollout",
        "phase": "Progressing",
        "revision": "rev-2.0",
        "step": "2/4",
        "weight": 10,
    }
    assert body["lastVerdict"] == "Pass"
    assert body["lastCheck"]["metrics"][0]["canaryRequests"] == 312
    assert body["metadata"] == {"cmd": "hey -z 1m"}


async def test_a_5xx_is_retried_with_backoff_and_a_4xx_is_not(
    receiver: Receiver, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    slept, sleep = sleeps
    receiver.script = [503, 500, 200]
    answer = await webhooks.post_json(session, receiver.url, {"a": 1}, timeout=5, retries=2, sleep=sleep)
    assert (answer.ok, answer.code, answer.attempts) == (True, 200, 3)
    assert slept == [0.5, 1.0]

    receiver.received.clear()
    receiver.script = [403]
    refused = await webhooks.post_json(session, receiver.url, {"a": 1}, timeout=5, retries=2, sleep=sleep)
    assert (refused.ok, refused.code, refused.attempts, len(receiver.received)) == (False, 403, 1, 1)
    assert refused.message == "HTTP 403: nope"


async def test_a_receiver_that_never_answers_costs_retries_times_the_timeout_and_no_more(
    receiver: Receiver, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    receiver.script = ["hang"]
    began = time.monotonic()
    answer = await webhooks.post_json(session, receiver.url, {}, timeout=0.2, retries=1, sleep=sleeps[1])
    took = time.monotonic() - began

    assert (answer.ok, answer.code, answer.attempts) == (False, None, 2)
    assert answer.message == "no answer within 0.2s"
    assert len(receiver.received) == 2
    assert 0.4 <= took < 2.0


async def test_a_receiver_that_is_down_is_reported_not_raised(session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    answer = await webhooks.post_json(session, "http://127.0.0.1:9/hook", {}, timeout=1, retries=1, sleep=sleeps[1])
    assert (answer.ok, answer.code, answer.attempts) == (False, None, 2)
    assert answer.message.startswith("cannot reach http://127.0.0.1:9/hook")


async def test_header_secrets_come_from_a_secret_read_at_every_call(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    api: kube.Client,
    cluster: clusters.EmulatedCluster,
    sleeps: Sleeps,
) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hook-auth"},
        "data": {"Authorization": base64.b64encode(b"Bearer s3cr3t").decode()},
    }
    with_secret = hook(receiver.url, headersFrom="hook-auth")
    missing = await webhooks.call(session, api, "shop", "web", with_secret, midway(), T0, sleeps[1])
    assert (missing.open, missing.attempts, missing.message) == (False, 0, "Secret shop/hook-auth not found")
    assert receiver.received == [], "nothing is sent without its credentials"

    cluster.create("/api/v1/namespaces/shop/secrets", secret)
    await webhooks.call(session, api, "shop", "web", with_secret, midway(), T0, sleeps[1])
    secret["data"] = {"Authorization": base64.b64encode(b"Bearer rotated").decode()}
    cluster.patch("/api/v1/namespaces/shop/secrets/hook-auth", {"data": secret["data"]})
    await webhooks.call(session, api, "shop", "web", with_secret, midway(), T0, sleeps[1])

    assert [r.headers["Authorization"] for r in receiver.received] == ["Bearer s3cr3t", "Bearer rotated"]
    assert "s3cr3t" not in str(receiver.received[0].body)


def gate_hook(name: str, kind: str, **fields: Any) -> models.Webhook:
    return models.Webhook.model_validate({"name": name, "type": kind, "url": "http://gate.shop/", **fields})


def answer(name: str, kind: str, is_open: bool) -> models.GateRecord:
    return models.GateRecord(
        name=name, type=kind, open=is_open, at=T0.isoformat(), message="HTTP 200" if is_open else "HTTP 412"
    )


def test_a_gate_opens_when_every_hook_of_its_type_answered_2xx() -> None:
    hooks = [gate_hook("qa", "confirm-promotion"), gate_hook("change-board", "confirm-promotion")]
    kind = models.WebhookType.CONFIRM_PROMOTION
    assert gating.state(hooks, kind, []).gate is gating.Gate.WAITING
    one = [answer("qa", "confirm-promotion", True)]
    waiting = gating.state(hooks, kind, one)
    assert (waiting.gate, waiting.message) == (
        gating.Gate.WAITING,
        "waiting for confirm-promotion webhook(s): change-board (not asked yet)",
    )
    both = gating.record(one, answer("change-board", "confirm-promotion", True))
    assert gating.state(hooks, kind, both).gate is gating.Gate.OPEN
    assert gating.state(hooks, models.WebhookType.PRE_ROLLOUT, []).gate is gating.Gate.OPEN, "no hook, no gate"


def test_a_refusing_gate_waits_by_default_and_fails_when_configured_to() -> None:
    kind = models.WebhookType.PRE_ROLLOUT
    refused = [answer("smoke", "pre-rollout", False)]
    assert gating.state([gate_hook("smoke", "pre-rollout")], kind, refused).gate is gating.Gate.WAITING
    failing = gating.state([gate_hook("smoke", "pre-rollout", onFailure="fail")], kind, refused)
    assert (failing.gate, failing.message) == (gating.Gate.FAILED, "pre-rollout webhook smoke refused: HTTP 412")
    reopened = gating.record(refused, answer("smoke", "pre-rollout", True))
    assert [(a.name, a.open) for a in reopened] == [("smoke", True)], "the latest answer of a hook replaces the older"


def test_webhook_specs_are_bounded_and_on_failure_is_for_gates_only() -> None:
    with pytest.raises(ValueError, match="timeout 2m is above 60s"):
        gate_hook("slow", "rollout", timeout="2m")
    with pytest.raises(ValueError, match="onFailure applies to gates"):
        gate_hook("load", "rollout", onFailure="fail")
    with pytest.raises(ValueError, match="less than or equal to 5"):
        gate_hook("many", "rollout", retries=9)
