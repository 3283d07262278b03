"""A local HTTP receiver on 127.0.0.1 that records what it is sent and answers as each test scripts it, and the
operator's metric source (the emulated cluster with namespace ``shop`` and a client on it: tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import aiohttp.test_utils
import aiohttp.web
import pytest
from receivers import Received, Receiver

from canary_operator import config, endpoints


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(url="")
    never = asyncio.Event()

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.Response:
        answer = state.answer_for(len(state.received))
        state.received.append(Received(request.path, dict(request.headers), await request.json()))
        if answer == "hang":
            await never.wait()
        assert isinstance(answer, int)
        return aiohttp.web.Response(status=answer, text="ok" if answer < 300 else "nope")

    app = aiohttp.web.Application()
    app.router.add_post("/{tail:.*}", handle)
    server = aiohttp.test_utils.TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/hook"))
    try:
        yield state
    finally:
        await server.close()


@pytest.fixture
async def source() -> AsyncIterator[endpoints.Source]:
    """The operator's own metric source; these ticks take no check, so it is never asked for a provider."""
    opened = endpoints.Source(config.PrometheusSettings())
    yield opened
    await opened.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(trust_env=False) as opened:
        yield opened


@pytest.fixture
def sleeps() -> tuple[list[float], Callable[[float], Any]]:
    """A sleep that records the backoffs instead of waiting them out."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return slept, sleep
