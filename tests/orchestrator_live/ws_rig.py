"""The WebSocket tests' rig: the routes and hub on a real aiohttp server, with the real registry and update bus."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.auth import Authenticator
from orchestrator.http.routes import ROUTES, add_routes
from orchestrator.jobs.event_sink import EventSink
from orchestrator.live.hub import WebSocketHub
from orchestrator.live.update_bus import UpdateBus
from orchestrator.live.websocket import WebSocketEndpoint
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.models import CancelResult, JobRecord, JobUpdate
from orchestrator.settings import WebSocketSettings
from orchestrator.store.event_history import EventHistory
from orchestrator.store.registry import RedisTaskRegistry
from protocol.events import EventType
from tests.records import event_for, make_record

SERVICE_TOKEN = "service-token-for-tests"
SERVICE = "query"  # the service SERVICE_TOKEN speaks for, and make_record's default
ALL_JOBS_REMEMBERED = 4  # per client, of the jobs it follows only through "all"


@dataclass
class Parts:
    registry: RedisTaskRegistry
    bus: UpdateBus
    hub: WebSocketHub


class SlowSnapshots(RedisTaskRegistry):
    """A registry whose reads take a while, before or after reading, to widen the snapshot race."""

    delay_before = 0.0
    delay_after = 0.0

    async def get(self, tenant_id: str, job_id: str) -> JobRecord | None:
        await asyncio.sleep(self.delay_before)
        record = await super().get(tenant_id, job_id)
        await asyncio.sleep(self.delay_after)
        return record


@dataclass
class Server:
    client: TestClient[Any, Any]
    parts: Parts
    registry: SlowSnapshots
    metrics: OrchestratorMetrics
    tenant: str
    other: str
    key: str
    other_key: str

    async def connect(self, path: str = "/ws/task_updates", key: str | None = None) -> aiohttp.ClientWebSocketResponse:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        ws = await self.client.ws_connect(path, headers=headers)
        hello = await receive(ws)
        assert hello["type"] == "connection_established"
        return ws

    async def job(self) -> JobRecord:
        record = make_record(self.tenant)
        await self.registry.create(record)
        return record

    async def emit(self, record: JobRecord, kind: EventType, seq: int, **data: Any) -> JobUpdate:
        update = await self.registry.apply_event(event_for(record, kind, seq, **data))
        assert update is not None
        await self.parts.bus.publish(update)
        return update


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT, msg
    body: dict[str, Any] = json.loads(msg.data)
    return body


async def closed_with(ws: aiohttp.ClientWebSocketResponse, *, skip_text: bool = False) -> int:
    """The close code the server sent (the client's own close_code also reflects its reply)."""
    while (msg := await ws.receive(timeout=10)).type is WSMsgType.TEXT and skip_text:
        pass
    assert msg.type is WSMsgType.CLOSE, msg
    return int(msg.data)


async def nothing_more(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.send_json({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}  # everything sent before the pong has been read


@asynccontextmanager
async def serve_ws(redis_client: aioredis.Redis, tenant: str, unique: str, **hub_options: Any) -> AsyncIterator[Server]:
    """The WebSocket routes of `tenant` (and `tenant`-b) on a test server; `hub_options` are WebSocketHub's."""
    metrics = OrchestratorMetrics()
    registry = SlowSnapshots(redis_client, ttl_seconds=600)
    bus = UpdateBus(redis_client, channel=f"test:task_updates:{unique}")
    options = {"client_buffer": 8, "all_jobs_remembered": ALL_JOBS_REMEMBERED, **hub_options}
    hub = WebSocketHub(metrics, **options)
    parts = Parts(registry, bus, hub)
    other = f"{tenant}-b"
    key, other_key = f"key-{unique}", f"other-{unique}"
    authenticator = Authenticator(
        {key: tenant, other_key: other}, admin_key=None, service_tokens={SERVICE_TOKEN: SERVICE}
    )

    async def cancel_job(tenant_id: str, job_id: str) -> CancelResult:
        result, update = await registry.cancel(tenant_id, job_id, "cancelled over the socket")
        if update is not None:
            await bus.publish(update)
        return result

    endpoint = WebSocketEndpoint(
        authenticator=authenticator,
        cancel_job=cancel_job,
        registry=registry,
        hub=hub,
        events=EventSink(registry, bus, metrics),
        max_message_bytes=1 << 20,
        limits=WebSocketSettings(auth_timeout_seconds=0.3),
        history=EventHistory(redis_client),
    )
    app = web.Application()
    add_routes(app.router, [endpoint], tuple(route for route in ROUTES if route.operation.path.startswith("/ws/")))
    await bus.start()
    remove = bus.add_listener(hub.dispatch)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Server(client, parts, registry, metrics, tenant, other, key, other_key)
    finally:
        await hub.close_all()
        await client.close()
        remove()
        await bus.stop()
