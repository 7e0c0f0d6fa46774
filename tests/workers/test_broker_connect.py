"""The worker's RabbitMQ connect: cut short at any point of the handshake, it leaves nothing running."""

from __future__ import annotations

import asyncio

import pytest

from workers.errors import BrokerError
from workers.runtime.broker import connect


async def test_a_connect_cut_short_leaves_nothing_running(rabbitmq_url: str) -> None:
    before = asyncio.all_tasks()
    for delay_ms in range(0, 30, 2):
        attempt = asyncio.create_task(connect(rabbitmq_url, "test-worker-cut", 5))
        await asyncio.sleep(delay_ms / 1000)
        attempt.cancel()
        try:
            connection = await attempt
        except asyncio.CancelledError:
            continue
        await connection.close()
    await asyncio.sleep(0.2)
    left = [task for task in asyncio.all_tasks() - before if not task.done() and task is not asyncio.current_task()]
    assert left == [], [task.get_coro() for task in left]


async def test_a_broker_that_is_not_there_is_a_broker_error() -> None:
    with pytest.raises(BrokerError, match=r"cannot connect|no answer"):
        await connect("amqp://guest:guest@127.0.0.1:1/", "test-worker-nowhere", 2)
