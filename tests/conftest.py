"""Shared fixtures. Integration tests use the real RabbitMQ and Redis, never fakes.

Tests share the broker and Redis with each other and with other runs: they use uuid-named
services and tenants, delete the queues they declare, and never flush a Redis database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack

import pytest
import redis.asyncio as aioredis

from tests.services import resolve_rabbitmq_url, resolve_redis_url


@pytest.fixture(scope="session")
def _service_stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture(scope="session")
def rabbitmq_url(_service_stack: ExitStack) -> str:
    return resolve_rabbitmq_url(_service_stack)


@pytest.fixture(scope="session")
def redis_url(_service_stack: ExitStack) -> str:
    return resolve_redis_url(_service_stack)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for service names, tenants and queues of one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    # Blocking pool: tests fire 100+ concurrent commands, which would exhaust a plain pool.
    client = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=256))
    yield client
    await client.aclose()
