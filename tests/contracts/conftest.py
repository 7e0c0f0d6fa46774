"""Each port of orchestrator.jobs.ports, once as its in-memory fake and once as the real thing.

A contract test takes one of these fixtures and runs twice: `[fake]` needs no service, `[redis]` and
`[rabbitmq]` are marked integration here by hand (only they ask for a service, by name at run time,
which the fixture-name rule of tests/conftest.py cannot see). Tenants, channels and services are
uuid-named per test; the Redis keys and queues a real run makes are deleted afterwards, nothing is flushed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
import redis.asyncio as aioredis

from orchestrator.broker.publisher import TaskPublisher
from orchestrator.jobs import ports
from orchestrator.live.update_bus import UpdateBus
from orchestrator.store.lanes import RedisLanes
from orchestrator.store.registry import RedisTaskRegistry
from protocol.codec import CodecSet
from protocol.lanes import lanes_key
from protocol.topology import lane_queue, service_queues
from tests.contracts.subjects import CONTRACT_MAX_MESSAGE_BYTES, BusPair
from tests.fakes.publisher import FakeTaskPublisher
from tests.fakes.registry import FakeTaskRegistry
from tests.fakes.update_bus import FakeChannel, FakeUpdateBus
from tests.redis_keys import keys_matching

CLOSED_PORT_URL = "amqp://guest:guest@127.0.0.1:1/"


@pytest.fixture
def tenant(unique: str) -> str:
    return f"t-contract-{unique}"


@pytest.fixture(params=["fake", pytest.param("redis", marks=pytest.mark.integration)])
async def registry(request: pytest.FixtureRequest, tenant: str) -> AsyncIterator[ports.TaskRegistry]:
    if request.param == "fake":
        yield FakeTaskRegistry()
        return
    # The URL, not the redis_client fixture: an async fixture cannot be asked for by name from another.
    client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    try:
        yield RedisTaskRegistry(client, ttl_seconds=600)
        # `{tenant}*`: the tests' second tenant is `tenant + "x"`. Cancel ledger keys expire on their own.
        for key in await keys_matching(client, f"orchestrator:*:{tenant}*"):
            await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture(params=["fake", pytest.param("redis", marks=pytest.mark.integration)])
async def bus_pair(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[BusPair]:
    """Two replicas' buses on one channel."""
    if request.param == "fake":
        channel = FakeChannel()
        yield FakeUpdateBus(channel), FakeUpdateBus(channel)
        return
    redis_url: str = request.getfixturevalue("redis_url")
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    buses = [UpdateBus(client, channel=f"test:contract:task_updates:{unique}") for client in clients]
    for bus in buses:
        await bus.start()
    try:
        yield buses[0], buses[1]
    finally:
        for bus in buses:
            await bus.stop()
        for client in clients:
            await client.aclose()


@pytest.fixture
def service(unique: str) -> str:
    return f"contract-{unique}"


@pytest.fixture(params=["fake", pytest.param("rabbitmq", marks=pytest.mark.integration)])
async def publisher(request: pytest.FixtureRequest, unique: str, service: str) -> AsyncIterator[ports.TaskPublisher]:
    codecs = CodecSet(CONTRACT_MAX_MESSAGE_BYTES)
    if request.param == "fake":
        yield FakeTaskPublisher(codecs)
        return
    rabbitmq_url: str = request.getfixturevalue("rabbitmq_url")
    redis = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    real = TaskPublisher(
        rabbitmq_url, codecs, connection_name=f"test-contract-publisher-{unique}", lanes=RedisLanes(redis)
    )
    await real.start()
    try:
        yield real
    finally:
        await real.close()
        lanes = (await RedisLanes(redis).tenants([service]))[service]
        await redis.delete(lanes_key(service))
        await redis.aclose()
        connection = await aio_pika.connect(rabbitmq_url)
        try:
            channel = await connection.channel()
            for name in (*(spec.name for spec in service_queues(service)), *(lane_queue(service, t) for t in lanes)):
                await channel.queue_delete(name)
        finally:
            await connection.close()


@pytest.fixture(params=["fake", "rabbitmq-unreachable"])
async def down_publisher(request: pytest.FixtureRequest) -> AsyncIterator[ports.TaskPublisher]:
    """A publisher whose broker cannot be reached (the real one pointed at a closed port)."""
    if request.param == "fake":
        fake = FakeTaskPublisher()
        fake.connected = False
        yield fake
        return
    real = TaskPublisher(CLOSED_PORT_URL, CodecSet(), reconnect_interval=0.05)
    await real.start()
    try:
        yield real
    finally:
        await real.close()
