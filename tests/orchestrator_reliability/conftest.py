"""Fixtures of the reliability tests: an orchestrator on the real services (see tests/api_server.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from tests.api_server import Api, serve_api


@pytest.fixture
async def api(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Api]:
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique) as api:
        yield api


async def until(predicate: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
