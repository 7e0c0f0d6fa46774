"""Fixtures of the live-state tests: a fresh tenant per test, its Redis keys deleted afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from orchestrator.store.registry import RedisTaskRegistry
from tests.redis_keys import keys_matching


@pytest.fixture
async def tenant(redis_client: aioredis.Redis, unique: str) -> AsyncIterator[str]:
    tenant_id = f"t-{unique}"
    yield tenant_id
    for pattern in (f"orchestrator:*:{tenant_id}:*", f"orchestrator:jobs:{tenant_id}"):
        for key in await keys_matching(redis_client, pattern):
            await redis_client.delete(key)


@pytest.fixture
def registry(redis_client: aioredis.Redis) -> RedisTaskRegistry:
    return RedisTaskRegistry(redis_client, ttl_seconds=600)
