"""The operator's HTTP endpoints: liveness ignores dependencies, readiness follows the API server."""

from __future__ import annotations

import aiohttp
import pytest

from canary_bench import prometheus
from canary_operator import telemetry


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def test_readiness_follows_the_api_and_liveness_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_HTTP_HOST", "127.0.0.1")
    api_answers = False

    async def ready() -> bool:
        return api_answers

    port = prometheus.free_port()
    runner = await telemetry.serve(ready, port=port)
    try:
        assert (await get(port, "/healthz"))[0] == 200
        assert (await get(port, "/readyz"))[0] == 503
        api_answers = True
        assert (await get(port, "/readyz"))[0] == 200
        status, text = await get(port, "/metrics")
        assert status == 200
        assert 'canary_operator_reconciles_total{result="error"} 0.0' in text
    finally:
        await runner.cleanup()


async def test_a_failing_readiness_check_is_not_ready_rather_than_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_HTTP_HOST", "127.0.0.1")

    async def broken() -> bool:
        raise ConnectionError("API server unreachable")

    port = prometheus.free_port()
    runner = await telemetry.serve(broken, port=port)
    try:
        assert (await get(port, "/readyz"))[0] == 503
    finally:
        await runner.cleanup()
