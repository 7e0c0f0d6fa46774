"""Fixtures of the logs and tracing tests: a broker channel and a uuid service whose queues are deleted after."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel

from protocol.topology import declare_exchanges
from tests.directory_cleanup import forget_services
from tests.workers.helpers import delete_service_queues


@pytest.fixture
async def channel(rabbitmq_url: str, request: pytest.FixtureRequest) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect_robust(
        rabbitmq_url, client_properties={"connection_name": f"tests.observability:{request.node.name}"}
    )
    channel = await connection.channel()
    await declare_exchanges(channel)
    yield channel
    await connection.close()


@pytest.fixture
async def services(channel: AbstractChannel, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[list[str]]:
    """Two uuid service names; their queues are deleted and their directory entries forgotten after."""
    names = [f"t-obs-{unique}", f"t-obs-b-{unique}"]
    yield names
    await delete_service_queues(channel, *names)
    await forget_services(redis_client, *names)  # the workers' heartbeats reach some orchestrator's directory


@pytest.fixture
def service(services: list[str]) -> str:
    return services[0]
