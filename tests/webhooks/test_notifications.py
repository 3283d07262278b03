"""Notifications from the state machine's transitions to a local receiver: payloads, Slack, de-duplication."""

from __future__ import annotations

import base64
import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

import aiohttp
import helpers
import pytest
from helpers import V1, V2, World
from receivers import Receiver

from canary_bench import cluster as clusters
from canary_operator import endpoints, kube, models, notifications, reconciling, rollouts

Sleeps = tuple[list[float], Callable[[float], Any]]
Verdict = models.Verdict


def notifier(**fields: Any) -> models.Notification:
    return models.Notification.model_validate({"name": "team", **fields})


def check(verdict: Verdict, at: datetime.datetime) -> models.CheckRecord:
    return helpers.record(verdict, at=at, canary_requests=312.4, primary_requests=2808.0, primary=0.1, limit="<= 1%")


def release(verdicts: list[Verdict]) -> tuple[World, list[notifications.Notice]]:
    """Drive the state machine through a release, collecting each tick's notices as the operator would."""
    world = World(spec=helpers.example_spec(interval="10s"), template=V1)
    world.tick()
    world.tick()
    world.template = V2
    found: list[notifications.Notice] = []
    remaining = iter(verdicts)
    for _ in range(300):
        due = rollouts.needs(world.spec, world.status, world.revision(world.template), world.now).check
        verdict = next(remaining, None) if due else None
        if due and verdict is None:
            break
        at = world.now
        decision = world.tick(check(verdict, at) if verdict is not None else None)
        found += notifications.notices(
            "shop", "web", [(e.reason, e.message) for e in decision.events], decision.status, at
        )
    return world, found


async def test_a_rollback_is_told_once_with_its_outcome_and_numbers(
    receiver: Receiver, session: aiohttp.ClientSession, api: kube.Client, sleeps: Sleeps
) -> None:
    world, notices = release([Verdict.FAIL, Verdict.FAIL])
    assert [n.event for n in notices] == [models.NotificationEvent.STARTED, models.NotificationEvent.ROLLED_BACK]
    dedup = notifications.Deduplicator()
    for notice in notices + notices:  # a tick repeated after a crash re-derives the same notices
        await notifications.send(session, api, notifier(url=receiver.url), notice, dedup, sleeps[1])

    assert [r.body["event"] for r in receiver.received] == ["started", "rolled-back"]
    rolled_back = receiver.received[1].body
    assert rolled_back["revision"] == "rev-2.0" and rolled_back["phase"] == "RolledBack"
    assert rolled_back["release"] == world.status.releases[-1].release_id
    assert "rolled back after 2 consecutive failed checks" in rolled_back["message"]
    assert rolled_back["metrics"] == [
        {
            "name": "error-rate",
            "verdict": "Fail",
            "canary": 5.0,
            "primary": 0.1,
            "canaryRequests": 312,
            "primaryRequests": 2808,
            "limit": "<= 1%",
        }
    ]


async def test_a_slack_message_states_the_outcome_and_the_numbers(
    receiver: Receiver, session: aiohttp.ClientSession, api: kube.Client, sleeps: Sleeps
) -> None:
    _, notices = release([Verdict.FAIL, Verdict.FAIL])
    slack = notifier(url=receiver.url, format="slack", events=["rolled-back"])
    dedup = notifications.Deduplicator()
    sent = [await notifications.send(session, api, slack, n, dedup, sleeps[1]) for n in notices]

    assert sent[0] is None, "started is not among this notifier's events"
    [message] = [r.body for r in receiver.received]
    assert message["text"] == "*shop/web* rolled back: revision `rev-2.0`"
    [attachment] = message["attachments"]
    assert attachment["color"] == "danger"
    assert "rolled back after 2 consecutive failed checks" in attachment["text"]
    metric = next(f for f in attachment["fields"] if f["title"] == "error-rate: Fail")
    assert metric["value"] == "canary 5 (n=312), primary 0.1 (n=2808), limit <= 1%"


async def test_a_flapping_hold_is_told_once_per_quiet_period(
    receiver: Receiver, session: aiohttp.ClientSession, api: kube.Client, sleeps: Sleeps
) -> None:
    flapping = [Verdict.INCONCLUSIVE] * 3 + [Verdict.PASS] + [Verdict.INCONCLUSIVE] * 3
    _, notices = release(flapping)
    paused = [n for n in notices if n.event is models.NotificationEvent.PAUSED]
    assert len(paused) == 2, "the state machine paused twice"
    dedup = notifications.Deduplicator(quiet=datetime.timedelta(minutes=10))
    for notice in notices:
        await notifications.send(session, api, notifier(url=receiver.url), notice, dedup, sleeps[1])
    assert [r.body["event"] for r in receiver.received].count("paused") == 1

    later = notifications.Notice(
        paused[1].event,
        "shop",
        "web",
        paused[1].message,
        paused[1].status,
        paused[1].at + datetime.timedelta(minutes=11),
    )
    await notifications.send(session, api, notifier(url=receiver.url), later, dedup, sleeps[1])
    assert [r.body["event"] for r in receiver.received].count("paused") == 2, "told again after the quiet period"


async def test_each_passed_step_is_told(
    receiver: Receiver, session: aiohttp.ClientSession, api: kube.Client, sleeps: Sleeps
) -> None:
    _, notices = release([Verdict.PASS] * 12)
    dedup = notifications.Deduplicator()
    for notice in notices:
        await notifications.send(session, api, notifier(url=receiver.url), notice, dedup, sleeps[1])
    events = [r.body["event"] for r in receiver.received]
    assert events == ["started", "step-passed", "step-passed", "step-passed", "step-passed", "promoted"]


async def test_the_url_and_headers_come_from_secrets_and_delivery_is_retried(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    api: kube.Client,
    cluster: clusters.EmulatedCluster,
    sleeps: Sleeps,
) -> None:
    _, notices = release([Verdict.FAIL, Verdict.FAIL])
    from_secret = notifier(urlFrom={"name": "slack", "key": "url"}, headersFrom="slack-headers", format="slack")
    dedup = notifications.Deduplicator()
    missing = await notifications.send(session, api, from_secret, notices[0], dedup, sleeps[1])
    assert missing is not None and (missing.ok, missing.message) == (False, "Secret shop/slack-headers not found")

    for name, data in (("slack", {"url": receiver.url}), ("slack-headers", {"X-Token": "t0k3n"})):
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        cluster.create("/api/v1/namespaces/shop/secrets", {"metadata": {"name": name}, "data": encoded})
    receiver.script = [502, 200]
    sent = await notifications.send(session, api, from_secret, notices[1], dedup, sleeps[1])

    assert sent is not None and (sent.ok, sent.attempts) == (True, 2)
    assert sleeps[0] == [0.5]
    assert [r.headers["X-Token"] for r in receiver.received] == ["t0k3n", "t0k3n"]


def test_a_notification_needs_exactly_one_url() -> None:
    with pytest.raises(ValueError, match="give exactly one of url or urlFrom"):
        notifier()
    with pytest.raises(ValueError, match="give exactly one of url or urlFrom"):
        notifier(url="http://a/", urlFrom={"name": "s", "key": "url"})


async def test_the_operator_notifies_when_it_first_posts_an_event_and_never_again_on_a_repost(
    receiver: Receiver,
    api: kube.Client,
    cluster: clusters.EmulatedCluster,
    source: endpoints.Source,
) -> None:
    rollout = helpers.example_rollout()
    rollout["spec"]["notifications"] = [{"name": "team", "url": receiver.url, "events": ["rolled-back"]}]
    cluster.create("/apis/canary.dev/v1alpha1/namespaces/shop/canaryrollouts", rollout)
    rolled_back = models.EventRecord(
        seq=7,
        type=models.EventType.WARNING,
        reason=models.Reason.ROLLED_BACK,
        message="revision rev-2.0 rolled back after 2 consecutive failed checks: error-rate 5% > 1%",
        at=helpers.T0.isoformat(),
    )
    outbox = {
        "status": {
            "phase": "RolledBack",
            "canaryRevision": "rev-2.0",
            "pendingEvents": [rolled_back.model_dump(mode="json", by_alias=True)],
        }
    }
    status_path = "/apis/canary.dev/v1alpha1/namespaces/shop/canaryrollouts/web/status"
    cluster.patch(status_path, outbox)

    await reconciling.tick(api, "shop", "web", metrics=source, now=helpers.T0)  # posts the outbox first, then decides
    await reconciling.notifications_sent()
    cluster.patch(status_path, outbox)  # as if the operator died before it cleared the outbox
    await reconciling.tick(api, "shop", "web", metrics=source, now=helpers.T0)
    await reconciling.notifications_sent()

    assert [r.body["event"] for r in receiver.received] == ["rolled-back"]
    assert receiver.received[0].body["message"].startswith("revision rev-2.0 rolled back after 2 consecutive")
    assert [e["reason"] for e in cluster.events("shop")].count("RolledBack") == 1


def releasing(**spec: Any) -> World:
    """A rollout taken over with ``spec`` over the example's, and revision 2.0 appearing."""
    raw = helpers.example_spec(interval="10s").model_dump(by_alias=True, exclude_none=True)
    world = World(spec=models.parse_spec({**raw, **spec}), template=V1)
    world.tick()
    world.tick()
    world.template = V2
    return world


@pytest.mark.parametrize(("abort", "told"), [(True, "rolled-back"), (False, "held")])
def test_a_progress_deadline_is_told_as_the_rollback_or_the_hold_it_caused(abort: bool, told: str) -> None:
    world = releasing(progressDeadline="1m", progressDeadlineAbort=abort)
    found: list[notifications.Notice] = []
    for _ in range(70):
        if world.canary is not None:  # pods that never become ready
            world.canary = dataclasses.replace(world.canary, ready_replicas=0)
        decision = world.tick()
        found += notifications.notices(
            "shop", "web", [(e.reason, e.message) for e in decision.events], decision.status, world.now
        )
    assert [n.event.value for n in found] == ["started", told]


@pytest.mark.parametrize(("on_failure", "told"), [("fail", "rolled-back"), ("wait", None)])
def test_a_refused_confirm_promotion_is_told_as_the_rollback_it_caused(on_failure: str, told: str | None) -> None:
    hook = {"name": "change-board", "type": "confirm-promotion", "url": "http://hooks.shop/", "onFailure": on_failure}
    world = releasing(webhooks=[hook])
    found: list[notifications.Notice] = []
    for _ in range(200):
        asked = rollouts.needs(world.spec, world.status, world.revision(world.template), world.now)
        if asked.gates:
            world.gate_answers.append(
                models.GateRecord(
                    name="change-board",
                    type="confirm-promotion",
                    revision="rev-2.0",
                    open=False,
                    at=world.now.isoformat(),
                    code=503,
                    message="HTTP 503: frozen",
                )
            )
        decision = world.tick(helpers.record(Verdict.PASS, at=world.now) if asked.check else None)
        found += notifications.notices(
            "shop", "web", [(e.reason, e.message) for e in decision.events], decision.status, world.now
        )
        if world.status.phase is models.Phase.ROLLED_BACK:
            break
    ends = [n for n in found if n.event not in (models.NotificationEvent.STARTED, models.NotificationEvent.STEP_PASSED)]
    assert [n.event.value for n in ends] == ([told] if told else [])
    if told:
        assert ends[0].message.startswith("revision rev-2.0 rolled back: confirm-promotion webhook change-board")


def test_a_pre_rollout_refusal_after_a_rolled_back_release_is_told_as_held_not_as_another_rollback() -> None:
    after_rollback = models.CanaryRolloutStatus.model_validate(
        {"phase": "RolledBack", "canaryRevision": "rev-2.0", "rejectedRevision": "rev-3.0"}
    )
    refused = "revision rev-3.0 not started: pre-rollout webhook change-board: HTTP 503: frozen"
    assert (
        notifications.event_of(models.Reason.WEBHOOK_REFUSED, after_rollback, refused) is models.NotificationEvent.HELD
    )


def test_a_pre_rollout_gate_shut_past_its_deadline_after_a_rolled_back_release_is_told_as_held() -> None:
    # The release before was rolled back (rejectedRevision is its canary's); the next revision waits on a shut
    # pre-rollout gate past progressDeadline. Nothing was rolled back: told as a rollback, it would also carry
    # the old release's key and be dropped as a repeat of that rollback's notice.
    after_rollback = models.CanaryRolloutStatus.model_validate(
        {"phase": "RolledBack", "canaryRevision": "rev-2.0", "rejectedRevision": "rev-2.0"}
    )
    waiting = (
        "revision rev-3.0 not started: pre-rollout webhook change-board: HTTP 503: frozen;"
        " not open within progressDeadline 10m"
    )
    rolled_back = "revision rev-2.0 rolled back: confirm-promotion webhook change-board: HTTP 503: frozen; traffic"
    found = notifications.notices(
        "shop",
        "web",
        [(models.Reason.WEBHOOK_REFUSED, waiting), (models.Reason.WEBHOOK_REFUSED, rolled_back)],
        after_rollback,
        datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC),
    )
    assert [n.event for n in found] == [models.NotificationEvent.HELD, models.NotificationEvent.ROLLED_BACK]
