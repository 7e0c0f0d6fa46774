"""Fixtures of the live-state tests: a fresh tenant per test, its Redis keys deleted afterwards; the event
consumer's rig; the WebSocket routes' server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
import redis.asyncio as aioredis

from orchestrator.live.update_bus import UpdateBus
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.models import JobUpdate
from orchestrator.store import keys
from orchestrator.store.directory import ServiceDirectory
from orchestrator.store.registry import RedisTaskRegistry
from tests.orchestrator_live.event_rig import Rig, drop_tenant
from tests.orchestrator_live.ws_rig import Server, serve_ws


@pytest.fixture
async def tenant(redis_client: aioredis.Redis, unique: str) -> AsyncIterator[str]:
    tenant_id = f"t-{unique}"
    yield tenant_id
    await drop_tenant(redis_client, tenant_id)


@pytest.fixture
async def server(
    request: pytest.FixtureRequest, redis_client: aioredis.Redis, tenant: str, unique: str
) -> AsyncIterator[Server]:
    """The WebSocket routes on a test server; parametrize indirectly with a dict to pass other WebSocketHub
    options (e.g. a short heartbeat)."""
    async with serve_ws(redis_client, tenant, unique, **getattr(request, "param", {})) as server:
        yield server


@pytest.fixture
def registry(redis_client: aioredis.Redis) -> RedisTaskRegistry:
    return RedisTaskRegistry(redis_client, ttl_seconds=600)


@pytest.fixture
async def rig(rabbitmq_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Rig]:
    connection = await aio_pika.connect_robust(
        rabbitmq_url, client_properties={"connection_name": f"test-orchestrator-live-{unique}"}
    )
    publisher = await connection.channel()
    bus_channel = f"test:task_updates:{unique}"
    bus = UpdateBus(redis_client, channel=bus_channel)
    await bus.start()
    updates: list[JobUpdate] = []
    bus.add_listener(updates.append)
    # A private exchange: the orchestrators other tests run consume everything on baton.events and
    # would apply these events first (the registry is shared), racing this test's consumer.
    queue_name, exchange = f"test.orchestrator.events.{unique}", f"test.events.{unique}"
    yield Rig(
        connection,
        publisher,
        RedisTaskRegistry(redis_client, ttl_seconds=600),
        ServiceDirectory(redis_client),
        bus,
        OrchestratorMetrics(),
        updates,
        queue_name,
        exchange,
        bus_channel,
    )
    await bus.stop()
    await publisher.queue_delete(queue_name)
    await publisher.exchange_delete(exchange)
    await connection.close()
    await redis_client.srem(keys.ANNOUNCED_SERVICES, f"svc-{unique}")
    await redis_client.hdel(keys.ROUTES, f"type-{unique}")
    await redis_client.delete(keys.workers(f"svc-{unique}"))
