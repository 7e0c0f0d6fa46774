"""The orchestrator's RabbitMQ connections send the frames of one loop turn together.

Reconnects use the same transport factory; tests/faults/test_rabbitmq_restart.py restarts the
broker under the real processes.
"""

from __future__ import annotations

import asyncio

import aio_pika

from orchestrator.broker.connect import connect_robust
from plumbing.amqp import CoalescingRobustConnection


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


async def test_a_connect_cut_short_leaves_nothing_running(rabbitmq_url: str, unique: str) -> None:
    """Stopping the app while a connection is being made (cancelled at any point of the handshake)
    closes what was opened: no aio-pika task outlives it to fail once the loop is closed."""
    before = asyncio.all_tasks()
    for delay_ms in range(0, 30, 2):
        attempt = asyncio.create_task(connect_robust(rabbitmq_url, f"test-cut-{unique}", timeout=5))
        await asyncio.sleep(delay_ms / 1000)
        attempt.cancel()
        try:
            connection = await attempt
        except asyncio.CancelledError:
            continue
        await connection.close()  # it was done before the cancel: closed the normal way
    await asyncio.sleep(0.2)
    left = [task for task in asyncio.all_tasks() - before if not task.done() and task is not asyncio.current_task()]
    assert left == [], [task.get_coro() for task in left]
