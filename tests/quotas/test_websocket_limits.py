"""WebSocket limits of one orchestrator process: caps on sockets, allowed origins, the message rate."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType

from orchestrator.app import METRICS
from orchestrator.rates import Rate
from orchestrator.settings import WebSocketSettings
from tests.api_server import Api
from tests.quotas.conftest import ServeApi

PATH = "/ws/task_updates"


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT, msg
    body: dict[str, Any] = json.loads(msg.data)
    return body


async def connected(api: Api, headers: dict[str, str]) -> aiohttp.ClientWebSocketResponse:
    ws = await api.client.ws_connect(PATH, headers=headers)
    assert (await receive(ws))["type"] == "connection_established"
    return ws


async def refused_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[dict[str, Any], int, str]:
    """The error message before the close, the close code and its reason."""
    message = await receive(ws)
    close = await ws.receive(timeout=5)
    assert close.type is WSMsgType.CLOSE, close
    return message, int(close.data), close.extra


def token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def refusals(api: Api, reason: str) -> float:
    value = api.app[METRICS].registry.get_sample_value("baton_websocket_refusals_total", {"reason": reason})
    return value or 0.0


async def test_a_tenant_gets_at_most_its_cap_of_sockets(serve: ServeApi) -> None:
    async with serve(websockets=WebSocketSettings(max_per_tenant=2)) as api:
        held = [await connected(api, api.headers_a) for _ in range(2)]
        over = await api.client.ws_connect(PATH, headers=api.headers_a)
        message, code, reason = await refused_with(over)
        assert code == WSCloseCode.TRY_AGAIN_LATER and reason == "tenant WebSocket cap reached"
        assert message["type"] == "error" and message["error"] == "too_many_connections"
        assert message["cap"] == "tenant_cap" and api.tenant_a in message["detail"]
        others = [await connected(api, api.headers_b) for _ in range(2)]  # another tenant's cap is its own
        await held.pop().close()
        held.append(await connected(api, api.headers_a))  # a closed socket frees its slot
        assert refusals(api, "tenant_cap") == 1
        for ws in held + others:
            await ws.close()


async def test_a_process_holds_at_most_its_cap_of_sockets(serve: ServeApi) -> None:
    async with serve(websockets=WebSocketSettings(max_connections=3, max_per_tenant=10)) as api:
        held = [await connected(api, api.headers_a), await connected(api, api.headers_b)]
        held.append(await connected(api, api.headers_a))
        for headers in (api.headers_a, api.headers_b):
            message, code, reason = await refused_with(await api.client.ws_connect(PATH, headers=headers))
            assert code == WSCloseCode.TRY_AGAIN_LATER and reason == "server WebSocket cap reached"
            assert message["cap"] == "process_cap" and "3 WebSockets" in message["detail"]
        assert refusals(api, "process_cap") == 2
        for ws in held:
            await ws.close()


async def test_sockets_waiting_to_authenticate_are_capped(serve: ServeApi) -> None:
    limits = WebSocketSettings(max_unauthenticated=1, auth_timeout_seconds=5)
    async with serve(websockets=limits) as api:
        waiting = await api.client.ws_connect(PATH)  # no credentials: it holds the one waiting slot
        message, code, _ = await refused_with(await api.client.ws_connect(PATH))
        assert code == WSCloseCode.TRY_AGAIN_LATER
        assert message["cap"] == "unauthenticated_cap" and "Authorization" in message["detail"]
        with_key = await connected(api, api.headers_a)  # credentials with the upgrade never wait
        await waiting.send_json({"type": "auth", "token": token(api.headers_b)})
        assert (await receive(waiting))["tenant_id"] == api.tenant_b
        next_one = await api.client.ws_connect(PATH)  # the slot is free again
        await next_one.send_json({"type": "auth", "token": token(api.headers_a)})
        assert (await receive(next_one))["type"] == "connection_established"
        assert refusals(api, "unauthenticated_cap") == 1
        for ws in (waiting, with_key, next_one):
            await ws.close()


async def test_a_silent_socket_is_closed_at_the_auth_timeout_and_frees_its_slot(serve: ServeApi) -> None:
    async with serve(websockets=WebSocketSettings(max_unauthenticated=1, auth_timeout_seconds=0.3)) as api:
        silent = await api.client.ws_connect(PATH)
        close = await silent.receive(timeout=5)
        assert close.type is WSMsgType.CLOSE and int(close.data) == 4401
        later = await api.client.ws_connect(PATH)
        await later.send_json({"type": "auth", "token": token(api.headers_a)})
        assert (await receive(later))["type"] == "connection_established"
        await later.close()


async def test_a_browser_upgrade_from_another_origin_is_refused_before_the_upgrade(serve: ServeApi) -> None:
    limits = WebSocketSettings(allowed_origins=frozenset({"https://app.example.com"}))
    async with serve(websockets=limits) as api:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await api.client.ws_connect(PATH, headers=api.headers_a, origin="https://evil.example.com")
        assert refused.value.status == 403
        for origin in ("https://app.example.com", "https://APP.example.com", None):  # None: not a browser
            ws = await api.client.ws_connect(f"{PATH}?token={token(api.headers_a)}", origin=origin)
            assert (await receive(ws))["type"] == "connection_established"
            await ws.close()
        assert refusals(api, "origin") == 1
        # The answer is JSON {error, detail} before any upgrade.
        response = await api.client.get(PATH, headers={**api.headers_a, "Origin": "https://evil.example.com"})
        assert response.status == 403
        body = await response.json()
        assert body["error"] == "forbidden_origin" and "evil.example.com" in body["detail"]


async def test_by_default_only_the_servers_own_host_is_an_allowed_origin(serve: ServeApi) -> None:
    async with serve() as api:
        own = f"http://{api.client.host}:{api.client.port}"
        ws = await api.client.ws_connect(PATH, headers=api.headers_a, origin=own)
        assert (await receive(ws))["type"] == "connection_established"
        await ws.close()
        for other in (f"http://{api.client.host}:1", "https://elsewhere.example.com", "null"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await api.client.ws_connect(PATH, headers=api.headers_a, origin=other)
            assert refused.value.status == 403, other


async def test_any_origin_when_the_list_says_star(serve: ServeApi) -> None:
    async with serve(websockets=WebSocketSettings(allowed_origins=frozenset({"*"}))) as api:
        ws = await api.client.ws_connect(PATH, headers=api.headers_a, origin="https://anywhere.example.com")
        assert (await receive(ws))["type"] == "connection_established"
        await ws.close()


async def test_a_client_over_its_message_rate_is_closed_with_1008(serve: ServeApi) -> None:
    async with serve(websockets=WebSocketSettings(message_rate=Rate(0.1, 3))) as api:
        ws = await connected(api, api.headers_a)
        calm = await connected(api, api.headers_b)
        for _ in range(6):
            await ws.send_json({"type": "ping"})
        assert [await receive(ws) for _ in range(3)] == [{"type": "pong"}] * 3
        message, code, reason = await refused_with(ws)
        assert code == WSCloseCode.POLICY_VIOLATION and reason == "message rate exceeded"
        assert message["error"] == "rate_limited" and message["cap"] == "message_rate"
        assert "0.1 a second, 3 at once" in message["detail"]
        assert refusals(api, "message_rate") == 1
        await calm.send_json({"type": "ping"})  # another connection's budget is its own
        assert await receive(calm) == {"type": "pong"}
        await calm.close()
