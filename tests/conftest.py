"""Shared fixtures. Integration tests use the real RabbitMQ and Redis, never fakes.

Tests share the broker and Redis with each other and with other runs: they use uuid-named
services and tenants, delete the queues they declare, and never flush a Redis database.

A test is an integration test when it needs a service fixture, directly or through another
fixture, or lives in a folder that starts real processes; it gets the `integration` mark here,
so `pytest -m "not integration"` runs without RabbitMQ and Redis and no hand-placed mark can drift.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.directory_cleanup import forget_session_services
from tests.services import resolve_rabbitmq_url, resolve_redis_url

TESTS = Path(__file__).parent
# Every fixture that reaches RabbitMQ or Redis depends on one of these.
SERVICE_FIXTURES = frozenset({"rabbitmq_url", "redis_url"})
# Their tests start the real processes (or private brokers) whatever fixtures they ask for.
INTEGRATION_FOLDERS = frozenset({"e2e", "faults", "fuzz"})


def needs_services(item: pytest.Item) -> bool:
    if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    return item.path.is_relative_to(TESTS) and item.path.relative_to(TESTS).parts[0] in INTEGRATION_FOLDERS


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_services(item):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def _service_stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture(scope="session")
def rabbitmq_url(_service_stack: ExitStack) -> str:
    return resolve_rabbitmq_url(_service_stack)


@pytest.fixture(scope="session")
def _uniques() -> list[str]:
    """Every `unique` suffix the session handed out."""
    return []


@pytest.fixture(scope="session")
def redis_url(_service_stack: ExitStack, _uniques: list[str]) -> Iterator[str]:
    url = resolve_redis_url(_service_stack)
    yield url
    forget_session_services(url, _uniques)


@pytest.fixture
def unique(_uniques: list[str]) -> str:
    """A short unique suffix for service names, tenants and queues of one test."""
    value = uuid.uuid4().hex[:10]
    _uniques.append(value)
    return value


def pooled_redis(redis_url: str) -> aioredis.Redis:
    # Blocking pool: tests fire 100+ concurrent commands, which would exhaust a plain pool.
    return aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=256))


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = pooled_redis(redis_url)
    yield client
    await client.aclose()
