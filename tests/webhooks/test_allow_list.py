"""The operator's allow-list of webhook and notification URLs: the SSRF control for the URLs tenants write."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import aiohttp.test_utils
import aiohttp.web
import helpers
import pytest
from helpers import T0
from receivers import Receiver

from canary_bench import cluster as clusters
from canary_operator import endpoints, kube, models, reconciling, webhooks


@pytest.fixture
def only_the_receivers_host(receiver: Receiver) -> Iterator[str]:
    """The operator allows the local receiver's /allowed path only."""
    allowed = receiver.url.replace("/hook", "/allowed")
    webhooks.configure(webhooks.Policy((allowed,)))
    try:
        yield allowed
    finally:
        webhooks.configure(webhooks.Policy())


def test_a_url_is_allowed_under_an_entry_only_with_the_same_scheme_host_port_and_path_prefix() -> None:
    policy = webhooks.Policy(("https://hooks.example.com/team-a",))
    assert policy.refuses("https://hooks.example.com/team-a/deploys") is None
    assert policy.refuses("https://hooks.example.com:443/team-a") is None
    for url in (
        "http://hooks.example.com/team-a",  # another scheme
        "https://hooks.example.com:8443/team-a",  # another port
        "https://hooks.example.com/team-ab",  # not below the path
        "https://hooks.example.com.evil.test/team-a",
        "http://169.254.169.254/latest/meta-data",
    ):
        refused = policy.refuses(url)
        assert refused is not None and "is not allowed by the operator" in refused, url
    assert webhooks.Policy().refuses("http://169.254.169.254/") is None, "no list: any URL (the documented default)"


def test_a_url_climbing_out_of_an_entry_with_dot_segments_is_refused() -> None:
    # A notifier's URL read from a Secret is checked as written; the HTTP client resolves . and .. before sending.
    policy = webhooks.Policy(("https://hooks.example.com/team-a",))
    for url in (
        "https://hooks.example.com/team-a/../admin",
        "https://hooks.example.com/team-a/%2e%2e/admin",
        "https://hooks.example.com/team-a/%2E./admin",
        "https://hooks.example.com/team-a/..%2fadmin",
        "https://hooks.example.com/team-a/./../admin",
    ):
        refused = policy.refuses(url)
        assert refused is not None and "is not allowed by the operator" in refused, url
    assert policy.refuses("https://hooks.example.com/team-a/deploys%20v2") is None, "an escaped name is still below"


async def test_a_post_climbing_out_of_the_allowed_path_reaches_nothing(
    receiver: Receiver, session: aiohttp.ClientSession, only_the_receivers_host: str
) -> None:
    climbing = only_the_receivers_host + "/../hook"  # resolves to the receiver's /hook, outside /allowed
    answer = await webhooks.post_json(session, climbing, {"a": 1}, timeout=1, retries=0)
    assert not answer.ok and answer.attempts == 0 and "is not allowed by the operator" in answer.message
    assert receiver.received == []


async def test_a_post_to_a_refused_url_sends_nothing_and_says_why(
    receiver: Receiver, session: aiohttp.ClientSession, only_the_receivers_host: str
) -> None:
    answer = await webhooks.post_json(session, receiver.url, {"a": 1}, timeout=1, retries=2)
    assert not answer.ok and answer.attempts == 0 and "is not allowed by the operator" in answer.message
    assert receiver.received == []
    allowed = await webhooks.post_json(session, only_the_receivers_host + "/x", {"a": 1}, timeout=1, retries=0)
    assert allowed.ok and len(receiver.received) == 1


async def test_a_redirect_is_not_followed(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    async def redirect(request: aiohttp.web.Request) -> aiohttp.web.Response:
        raise aiohttp.web.HTTPTemporaryRedirect(receiver.url)

    app = aiohttp.web.Application()
    app.router.add_post("/", redirect)
    server = aiohttp.test_utils.TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        answer = await webhooks.post_json(session, str(server.make_url("/")), {"a": 1}, timeout=1, retries=0)
    finally:
        await server.close()
    assert not answer.ok and answer.code == 307
    assert receiver.received == [], "the redirect's target was never called"


async def test_a_rollout_naming_a_refused_url_is_stalled_before_anything_is_taken_over(
    receiver: Receiver,
    api: kube.Client,
    cluster: clusters.EmulatedCluster,
    source: endpoints.Source,
    only_the_receivers_host: str,
) -> None:
    cluster.create("/apis/apps/v1/namespaces/shop/deployments", helpers.deployment("web", 2))
    rollout = helpers.example_rollout()
    rollout["spec"]["webhooks"] = [{"name": "smoke", "type": "pre-rollout", "url": receiver.url}]
    rollout["spec"]["notifications"] = [{"name": "team", "url": "http://169.254.169.254/latest"}]
    cluster.create("/apis/canary.dev/v1alpha1/namespaces/shop/canaryrollouts", rollout)

    for second in range(3):
        await reconciling.tick(api, "shop", "web", metrics=source, now=T0.replace(second=second))

    status = (cluster.rollout("shop", "web") or {})["status"]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", models.Reason.WEBHOOK_NOT_ALLOWED)
    assert "webhook smoke: URL http://127.0.0.1:" in stalled["message"]
    assert "notification team: URL http://169.254.169.254/latest is not allowed" in stalled["message"]
    events = [e for e in cluster.list("/api/v1/namespaces/shop/events") if e["reason"] == "WebhookNotAllowed"]
    assert len(events) == 1 and events[0]["type"] == "Warning"
    assert cluster.get("/apis/apps/v1/namespaces/shop/deployments/web-primary") is None, "nothing taken over"
    helpers.assert_not_taken_over(cluster.deployment("shop", "web"), 2)
    assert receiver.received == []
