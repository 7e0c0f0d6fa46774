"""Fixtures of the worker tests: a broker connection and uuid-named services whose queues are deleted after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from protocol.topology import declare_exchanges
from tests.directory_cleanup import forget_services
from tests.workers.helpers import delete_service_queues


@pytest.fixture
async def amqp(rabbitmq_url: str, request: pytest.FixtureRequest) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(
        rabbitmq_url, client_properties={"connection_name": f"tests.workers:{request.node.name}"}
    )
    yield connection
    await connection.close()


@pytest.fixture
async def channel(amqp: AbstractRobustConnection) -> AsyncIterator[AbstractChannel]:
    channel = await amqp.channel()
    await declare_exchanges(channel)
    yield channel


@pytest.fixture
async def service_names(
    amqp: AbstractRobustConnection, redis_client: aioredis.Redis, unique: str
) -> AsyncIterator[Callable[[str], str]]:
    """`service_names("a")` -> a uuid service name; its queues are deleted at teardown."""
    made: list[str] = []

    def make(label: str = "svc") -> str:
        name = f"t-{label}-{unique}"
        made.append(name)
        return name

    yield make
    cleanup = await amqp.channel()
    await delete_service_queues(cleanup, *made)
    await cleanup.close()
    # A worker's heartbeat reaches whichever orchestrator consumes the events queue at the time.
    await forget_services(redis_client, *made)


@pytest.fixture
def service(service_names: Callable[[str], str]) -> str:
    return service_names("svc")


@pytest.fixture
async def ledger_keys(redis_client: aioredis.Redis) -> AsyncIterator[list[str]]:
    """Keys a test sets or makes the ledger set; deleted at teardown (never a flush)."""
    keys: list[str] = []
    yield keys
    if keys:
        await redis_client.delete(*keys)
