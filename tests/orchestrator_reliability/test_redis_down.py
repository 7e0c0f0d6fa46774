"""With Redis unreachable, POST /jobs answers 503 fast with Retry-After and /health says redis is down."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.app import create_app
from orchestrator.settings import OrchestratorSettings, SweeperSettings

# Nothing listens on port 1. The broker is pointed at a closed port too, so this app never takes
# events off the shared events queue that other orchestrators (with a working Redis) consume.
DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_BROKER = "amqp://guest:guest@127.0.0.1:1/"


@pytest.fixture
async def client(unique: str) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    settings = OrchestratorSettings(
        rabbitmq_url=DEAD_BROKER, redis_url=DEAD_REDIS, api_keys={f"key-{unique}": f"t-{unique}"}
    )
    sweeper = SweeperSettings(tenants=frozenset({f"t-{unique}"}), lock_key=f"test:sweeper:{unique}")
    async with TestClient(TestServer(create_app(settings, sweeper=sweeper))) as client:
        yield client


async def test_post_jobs_is_refused_fast_and_health_names_redis(
    client: TestClient[web.Request, web.Application], unique: str
) -> None:
    started = time.monotonic()
    response = await client.post(
        "/jobs", json={"type": "llm_request", "payload": {}}, headers={"Authorization": f"Bearer key-{unique}"}
    )
    assert time.monotonic() - started < 2.0
    assert response.status == 503
    assert response.headers["Retry-After"]
    assert (await response.json())["error"] == "registry_unavailable"

    health = await client.get("/health")
    assert health.status == 503
    body = await health.json()
    assert body["redis"] == "down"
    assert "redis" in body["down"]
    assert body["update_bus"] == "resubscribing"
    assert body["event_consumer"] == "connecting"
