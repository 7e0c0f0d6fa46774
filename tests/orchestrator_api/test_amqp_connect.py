"""The orchestrator's RabbitMQ connections send the frames of one loop turn together.

Reconnects use the same transport factory; tests/faults/test_rabbitmq_restart.py restarts the
broker under the real processes.
"""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from orchestrator.amqp_connect import CoalescingRobustConnection, connect_robust


@pytest.mark.integration
async def test_frames_of_concurrent_channels_share_socket_writes(rabbitmq_url: str, unique: str) -> None:
    connection = await connect_robust(rabbitmq_url, f"test-coalescing-{unique}", timeout=5)
    try:
        assert isinstance(connection, CoalescingRobustConnection)
        channels = [await connection.channel(publisher_confirms=True) for _ in range(20)]
        queue = await channels[0].declare_queue(f"test.coalescing.{unique}", exclusive=True)
        transport = connection.transport_factory.current
        assert transport is not None
        before = transport.sends
        await asyncio.gather(
            *(
                channel.default_exchange.publish(aio_pika.Message(f"m{i}".encode()), queue.name)
                for i, channel in enumerate(channels)
            )
        )
        sends = transport.sends - before
        assert (await queue.declare()).message_count == 20  # every publish confirmed and queued
        assert sends < 10  # 20 publishes on 20 channels, written in a few sends, not one each
    finally:
        await connection.close()
