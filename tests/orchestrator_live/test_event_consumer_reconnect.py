"""The event consumer across a cut link: work under way on the closed channel must not stop it.

The consumer's connection goes through a proxy that cuts it; the robust connection reopens the channel
and the broker redelivers what the closed one had not settled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aio_pika
import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractRobustConnection

from orchestrator.broker.event_consumer import EventConsumer
from orchestrator.store.directory import ServiceDirectory
from protocol.control import WorkerHeartbeat
from protocol.events import EventType
from protocol.topology import system_routing_key
from tests.orchestrator_live.event_rig import CODECS, HeldRegistry, Rig
from tests.polling import eventually
from tests.records import event_for, make_record, worker_heartbeat
from tests.services import relocated_url
from tests.tcp_proxy import TcpProxy


class HeldDirectory(ServiceDirectory):
    """The real directory; the first heartbeat waits for `go`."""

    def __init__(self, redis: aioredis.Redis) -> None:
        super().__init__(redis)
        self.entered = asyncio.Event()
        self.go = asyncio.Event()

    async def record_heartbeat(self, hb: WorkerHeartbeat) -> bool:
        if not self.entered.is_set():
            self.entered.set()
            await self.go.wait()
        return await super().record_heartbeat(hb)


@pytest.fixture
async def proxied(rabbitmq_url: str, unique: str) -> AsyncIterator[tuple[TcpProxy, AbstractRobustConnection]]:
    """A robust connection to RabbitMQ through a proxy that can cut it."""
    target = urlsplit(rabbitmq_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    connection = await aio_pika.connect_robust(
        relocated_url(rabbitmq_url, proxy.port, reconnect_interval="0.2"),
        client_properties={"connection_name": f"test-consumer-reconnect-{unique}"},
    )
    yield proxy, connection
    await connection.close()
    await proxy.close()


async def cut_and_reconnect(proxy: TcpProxy, consumer: EventConsumer) -> None:
    proxy.cut()
    await eventually(lambda: consumer.state == "reconnecting", within=5)
    await eventually(lambda: consumer.state == "consuming", within=15)


async def test_a_window_under_way_when_the_channel_closes_leaves_the_consumer_working(
    rig: Rig, redis_client: aioredis.Redis, tenant: str, proxied: tuple[TcpProxy, AbstractRobustConnection]
) -> None:
    """Its deliveries can no longer be acked (the broker redelivers them): later windows are still applied."""
    proxy, connection = proxied
    registry, record = HeldRegistry(redis_client), make_record(tenant)
    await registry.create(record)
    consumer = rig.consumer(registry, connection=connection)
    await consumer.start()
    try:
        await rig.publish_event(event_for(record, EventType.TASK_STATUS_UPDATE, 1, status="running"))
        await asyncio.wait_for(registry.entered.wait(), 10)
        await cut_and_reconnect(proxy, consumer)
        registry.go.set()  # applied; its ack cannot be sent on the closed channel
        await rig.publish_event(event_for(record, EventType.TASK_COMPLETED, 2, result={"ok": True}))
        await eventually(lambda: [u.seq for u in rig.updates] == [2, 3], within=10)
    finally:
        await consumer.stop()
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.status == "completed"


async def test_a_heartbeat_under_way_when_the_channel_closes_leaves_the_consumer_working(
    rig: Rig, redis_client: aioredis.Redis, unique: str, proxied: tuple[TcpProxy, AbstractRobustConnection]
) -> None:
    proxy, connection = proxied
    held = HeldDirectory(redis_client)
    consumer = rig.consumer(connection=connection, directory=held)
    service = f"svc-{unique}"
    await consumer.start()
    try:
        first = worker_heartbeat(service, [f"type-{unique}"], worker_id="w-1")
        await rig.publish(system_routing_key(service, "worker_heartbeat"), CODECS.encode(first))
        await asyncio.wait_for(held.entered.wait(), 10)
        await cut_and_reconnect(proxy, consumer)
        held.go.set()  # recorded; its ack cannot be sent on the closed channel
        second = worker_heartbeat(service, [f"type-{unique}"], worker_id="w-2")
        await rig.publish(system_routing_key(service, "worker_heartbeat"), CODECS.encode(second))

        async def both_seen() -> bool:
            return sorted(w.worker_id for w in await rig.directory.live_workers(service)) == ["w-1", "w-2"]

        await eventually(both_seen, within=10)
    finally:
        await consumer.stop()
