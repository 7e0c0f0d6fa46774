"""Our RabbitMQ connections queue a burst of frames for their writer without throttling it, on every
(re)connect: a burst of confirmed publishes leaves in a few socket writes, not one per publish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiormq
import pytest
from aio_pika.abc import AbstractChannel
from aiormq import spec

from plumbing.amqp import WRITE_QUEUE_FRAMES, CoalescingRobustConnection, open_robust_connection, publish_confirmed
from tests.polling import eventually
from tests.services import relocated_url
from tests.tcp_proxy import TcpProxy

BURST = 200


@pytest.fixture
async def proxied(rabbitmq_url: str, unique: str) -> AsyncIterator[tuple[TcpProxy, CoalescingRobustConnection]]:
    """One of our robust connections, through a proxy that can cut it."""
    target = urlsplit(rabbitmq_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    url = relocated_url(rabbitmq_url, proxy.port, reconnect_interval="0.2")
    connection = await open_robust_connection(url, f"test-write-queue-{unique}", timeout=5)
    yield proxy, connection
    await connection.close()
    await proxy.close()


def underlay(connection: CoalescingRobustConnection) -> aiormq.abc.AbstractConnection:
    assert connection.transport is not None
    return connection.transport.connection


async def publish_burst(connection: CoalescingRobustConnection, channel: AbstractChannel, queue_name: str) -> int:
    """BURST confirmed publishes at once on `channel`; the socket writes they took."""
    queue = await channel.declare_queue(queue_name, exclusive=True)
    transport = connection.transport_factory.current
    assert transport is not None
    before = transport.sends
    properties = spec.Basic.Properties(delivery_mode=2)
    await asyncio.gather(
        *(
            publish_confirmed(channel, "", f"m{i}".encode(), properties, queue_name, mandatory=True, timeout=10)
            for i in range(BURST)
        )
    )
    sends = transport.sends - before
    assert (await queue.declare()).message_count == BURST  # every publish confirmed and queued
    return sends


async def test_a_burst_of_publishes_on_one_channel_leaves_in_a_few_writes(
    proxied: tuple[TcpProxy, CoalescingRobustConnection], unique: str
) -> None:
    _, connection = proxied
    assert underlay(connection).write_queue.maxsize == WRITE_QUEUE_FRAMES
    channel = await connection.channel(publisher_confirms=True)
    # With aiormq's queue of 10 frames, the publishes past the 10th left one loop turn apart: ~190 writes.
    assert await publish_burst(connection, channel, f"test.write-queue.{unique}") <= 5


async def test_a_reconnected_connection_and_its_restored_channel_queue_as_widely(
    proxied: tuple[TcpProxy, CoalescingRobustConnection], unique: str
) -> None:
    proxy, connection = proxied
    channel = await connection.channel(publisher_confirms=True)  # open across the cut: restored on reconnect
    first = underlay(connection)
    proxy.cut()
    await eventually(lambda: connection.connected.is_set() and underlay(connection) is not first, within=15)
    assert underlay(connection).write_queue.maxsize == WRITE_QUEUE_FRAMES
    restored = await channel.get_underlay_channel()
    assert restored.connection is underlay(connection)
    assert await publish_burst(connection, channel, f"test.write-queue-again.{unique}") <= 5
