"""ctx.http without a broker: header building, retries, errors (against a local aiohttp server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from protocol.envelope import ContextIds, TaskEnvelope
from workers import HttpConnectionError, HttpStatusError
from workers.breaker import CircuitBreakers
from workers.http import ContextHttpClient, HttpPolicy, context_headers


def test_context_headers_carry_every_id() -> None:
    envelope = TaskEnvelope(
        global_task_id="job-1",
        tenant_id="tenant-a",
        session_id="s-1",
        type="t",
        service="svc",
        context=ContextIds(agent_id="ag", conversation_id="conv", collection_id="col", user_id="u", request_id="r"),
    )
    assert context_headers(envelope) == {
        "X-Agent-Id": "ag",
        "X-Conversation-Id": "conv",
        "X-Collection-Id": "col",
        "X-User-Id": "u",
        "X-Request-Id": "r",
        "X-Tenant-Id": "tenant-a",
        "X-Global-Task-Id": "job-1",
        "X-Task-Id": envelope.task_id,
        "X-Session-Id": "s-1",
    }


def test_absent_ids_are_not_sent() -> None:
    envelope = TaskEnvelope(global_task_id="job-1", tenant_id="tenant-a", type="t", service="svc")
    assert set(context_headers(envelope)) == {"X-Tenant-Id", "X-Global-Task-Id", "X-Task-Id"}


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, dict[str, int]]]:
    hits: dict[str, int] = {}

    async def always_502(request: web.Request) -> web.Response:
        hits[request.method] = hits.get(request.method, 0) + 1
        return web.Response(status=502, text="bad gateway")

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"tenant": request.headers.get("X-Tenant-Id"), "body": await request.json()})

    app = web.Application()
    app.router.add_route("*", "/502", always_502)
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", hits
    await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[ContextHttpClient]:
    async with aiohttp.ClientSession() as session:
        yield ContextHttpClient(
            session,
            {"X-Tenant-Id": "tenant-a"},
            HttpPolicy(max_retries=2, backoff_seconds=0.01),
            breakers=CircuitBreakers(),
        )


async def test_idempotent_methods_are_retried_on_5xx_and_others_are_not(
    server: tuple[str, dict[str, int]], client: ContextHttpClient
) -> None:
    base, hits = server
    response = await client.get(f"{base}/502")
    assert response.status == 502 and hits["GET"] == 3
    await client.post(f"{base}/502", json={})
    assert hits["POST"] == 1
    with pytest.raises(HttpStatusError) as caught:
        response.raise_for_status()
    assert caught.value.status == 502 and "bad gateway" in str(caught.value)


async def test_json_round_trip_with_context_headers(
    server: tuple[str, dict[str, int]], client: ContextHttpClient
) -> None:
    base, _ = server
    response = await client.post(f"{base}/echo", json={"q": 1}, headers={"X-Tenant-Id": "spoofed"})
    body: dict[str, Any] = response.raise_for_status().json()
    assert body == {"tenant": "tenant-a", "body": {"q": 1}}  # the task's ids win over caller headers


async def test_connection_errors_become_http_connection_error(client: ContextHttpClient) -> None:
    with pytest.raises(HttpConnectionError, match=r"GET http://127\.0\.0\.1:9/"):
        await client.get("http://127.0.0.1:9/", retries=1)
