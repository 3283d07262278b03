"""Calling webhooks: gates, rollout hooks and notifications share one bounded POST.

Every call has a timeout per attempt and a bounded number of retries (after a
timeout, a refused connection or a 5xx; never after a 4xx, which says the
request itself is wrong), so a dead receiver costs a tick at most
``(retries + 1) * timeout`` plus short backoffs, never an open-ended wait.
Header secrets are read from a Secret at every call, so a rotated token is
used at once and never lands in the CanaryRollout or the logs.

Any team that can write a CanaryRollout chooses these URLs, so the operator's
network position is at stake (cloud metadata endpoints, in-cluster admin APIs):
the operator's allow-list (``Policy``, ``CANARY_WEBHOOK_ALLOWED_URLS``) is
checked before every POST, a notifier's URL read from a Secret included, and
redirects are never followed.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp

from canary_operator import endpoints, kube, models, providers

Sleep = Callable[[float], Awaitable[None]]
BACKOFF_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 4.0


@dataclasses.dataclass(frozen=True)
class Policy:
    """Where webhooks and notifications may be sent: below one of ``allowed`` (scheme, host, port, path); empty: any."""

    allowed: tuple[str, ...] = ()

    def refuses(self, url: str) -> str | None:
        """Why ``url`` may not be called, or None."""
        if not self.allowed or (_plain(url) and any(endpoints.is_under(url, base) for base in self.allowed)):
            return None
        allowed = ", ".join(providers.display_url(base) for base in self.allowed)
        return f"URL {providers.display_url(url)} is not allowed by the operator (allowed: {allowed})"


def _plain(url: str) -> bool:
    """Whether ``url``'s path is compared as it will be requested: the allow-list compares paths as written, but
    the HTTP client resolves . and .. segments (escaped ones too) and a receiver may unescape a slash, so
    ``<entry>/../admin`` would leave the entry. A URL from the spec is normalized already; one read from a
    Secret is not. Backslashes are refused as well: parsers disagree on where they end the host."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    return "\\" not in url and not any(part in (".", "..") for part in path.split("/"))


# The operator's policy, set once at startup from its settings (``main.configure``); any URL until then.
_policy = Policy()


def configure(policy: Policy) -> None:
    global _policy
    _policy = policy


def refused(spec: models.CanaryRolloutSpec) -> str | None:
    """Why the spec's webhook or notification URLs may not be called (a URL read from a Secret is checked at send)."""
    named = [(f"webhook {hook.name}", str(hook.url)) for hook in spec.webhooks]
    named += [(f"notification {n.name}", str(n.url)) for n in spec.notifications if n.url is not None]
    problems = [f"{what}: {why}" for what, url in named if (why := _policy.refuses(url)) is not None]
    return "; ".join(problems) or None


@dataclasses.dataclass(frozen=True)
class Answer:
    ok: bool  # a 2xx answer
    code: int | None  # None: no HTTP answer (timeout, refused)
    attempts: int
    message: str


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any],
    *,
    timeout: float,
    retries: int,
    headers: Mapping[str, str] | None = None,
    sleep: Sleep = asyncio.sleep,
) -> Answer:
    """POST ``body`` as JSON; retried after timeouts, connection errors and 5xx answers; never to a refused URL."""
    why = _policy.refuses(url)
    if why is not None:
        return Answer(False, None, 0, why)
    message = ""
    code: int | None = None
    for attempt in range(1, retries + 2):
        try:
            async with session.post(
                url,
                json=body,
                headers=dict(headers or {}),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,  # a redirect would lead past the allow-list
            ) as response:
                code = response.status
                text = (await response.text())[:200].strip()
                message = f"HTTP {code}" + (f": {text}" if text else "")
                if 200 <= code < 300:
                    return Answer(True, code, attempt, message)
                if code < 500:
                    return Answer(False, code, attempt, message)
        except TimeoutError:
            code, message = None, f"no answer within {timeout:g}s"
        except aiohttp.ClientError as exc:
            code, message = None, f"cannot reach {url}: {exc}"
        if attempt <= retries:
            await sleep(min(BACKOFF_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS))
    return Answer(False, code, retries + 1, message)


async def secret_data(api: kube.Client, namespace: str, name: str) -> dict[str, str]:
    """The decoded keys of a Secret; KeyError naming it when it is missing."""
    secret = await api.get(kube.secret_path(namespace, name))
    if secret is None:
        raise KeyError(f"Secret {namespace}/{name} not found")
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


def payload(
    namespace: str,
    name: str,
    status: models.CanaryRolloutStatus,
    kind: str,
    metadata: Mapping[str, str] | None = None,
    revision: str | None = None,
) -> dict[str, Any]:
    """What a webhook receives: the rollout, the revision, phase, step, weight and the last verdict."""
    check = status.last_check
    return {
        "name": name,
        "namespace": namespace,
        "type": kind,
        "phase": status.phase.value if status.phase else None,
        "revision": revision or status.canary_revision,
        "stableRevision": status.stable_revision,
        "release": status.release_id,
        "step": status.step,
        "currentStepIndex": status.current_step_index,
        "weight": status.weight,
        "lastVerdict": status.last_verdict,
        "lastCheck": None if check is None else check.model_dump(mode="json", by_alias=True, exclude_none=True),
        "metadata": dict(metadata or {}),
    }


async def call(
    session: aiohttp.ClientSession,
    api: kube.Client,
    namespace: str,
    name: str,
    hook: models.Webhook,
    status: models.CanaryRolloutStatus,
    now: datetime.datetime,
    sleep: Sleep = asyncio.sleep,
    revision: str | None = None,
) -> models.GateRecord:
    """Call one webhook about ``revision`` (default: the canary's) and record its answer as ``open`` or not."""
    revision = revision or status.canary_revision
    try:
        headers = await secret_data(api, namespace, hook.headers_from) if hook.headers_from else {}
    except KeyError as exc:
        return models.GateRecord(
            name=hook.name,
            type=hook.type.value,
            revision=revision,
            open=False,
            at=now.isoformat(),
            attempts=0,
            message=str(exc.args[0]),
        )
    body = payload(namespace, name, status, hook.type.value, hook.metadata, revision)
    answer = await post_json(
        session, str(hook.url), body, timeout=hook.timeout_seconds, retries=hook.retries, headers=headers, sleep=sleep
    )
    return models.GateRecord(
        name=hook.name,
        type=hook.type.value,
        revision=revision,
        open=answer.ok,
        at=now.isoformat(),
        attempts=answer.attempts,
        code=answer.code,
        message=answer.message,
    )


async def ask(
    api: kube.Client,
    namespace: str,
    name: str,
    spec: models.CanaryRolloutSpec,
    status: models.CanaryRolloutStatus,
    gates: Sequence[tuple[models.WebhookType, str]],
    checking: bool,
    now: datetime.datetime,
) -> list[models.GateRecord]:
    """Call the gates the state machine asked for, and, when a check is taken, the rollout and rollback hooks."""
    due: list[tuple[models.Webhook, str | None]] = [
        (hook, revision) for kind, revision in gates for hook in spec.webhooks if hook.type is kind
    ]
    if checking:
        due += [(hook, None) for hook in spec.webhooks if hook.type in PER_CHECK]
    if not due:
        return []
    async with aiohttp.ClientSession() as session:
        return [await call(session, api, namespace, name, hook, status, now, revision=rev) for hook, rev in due]


PER_CHECK = frozenset({models.WebhookType.ROLLOUT, models.WebhookType.ROLLBACK})


async def after(
    api: kube.Client,
    namespace: str,
    name: str,
    spec: models.CanaryRolloutSpec,
    status: models.CanaryRolloutStatus,
    now: datetime.datetime,
) -> list[models.GateRecord]:
    """The post-rollout hooks, once a release ended (promoted or rolled back); their answers change nothing."""
    hooks = [hook for hook in spec.webhooks if hook.type is models.WebhookType.POST_ROLLOUT]
    if not hooks:
        return []
    async with aiohttp.ClientSession() as session:
        return [await call(session, api, namespace, name, hook, status, now) for hook in hooks]
