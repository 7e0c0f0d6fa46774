"""Settlements against a real RabbitMQ: a `multiple` ack only where it settles exactly the set given."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from orchestrator.broker.settlements import Settlements
from tests.polling import eventually

QUEUE_EXPIRES_MS = 60_000


@pytest.fixture
async def connection(rabbitmq_url: str, unique: str) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(rabbitmq_url, client_properties={"connection_name": f"test-{unique}"})
    yield connection
    await connection.close()


async def deliveries(
    connection: AbstractRobustConnection, queue_name: str, count: int
) -> tuple[AbstractChannel, list[AbstractIncomingMessage], Settlements]:
    """`count` messages published to a fresh queue, delivered (unacked) to a consumer of a channel of their own,
    and tracked by a Settlements."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=count)
    # x-expires: a test that fails before left_in_queue deletes it leaves no queue on the shared broker.
    queue = await channel.declare_queue(queue_name, auto_delete=False, arguments={"x-expires": QUEUE_EXPIRES_MS})
    for n in range(count):
        await channel.default_exchange.publish(aio_pika.Message(str(n).encode()), routing_key=queue_name)
    received: list[AbstractIncomingMessage] = []

    async def receive(message: AbstractIncomingMessage) -> None:
        received.append(message)

    await queue.consume(receive)
    await eventually(lambda: len(received) == count)
    settlements = Settlements()
    for message in received:
        settlements.delivered(message)
    return channel, received, settlements


async def left_in_queue(connection: AbstractRobustConnection, queue_name: str) -> list[bytes]:
    channel = await connection.channel()
    queue = await channel.declare_queue(queue_name, passive=True)
    bodies = []
    while (message := await queue.get(fail=False)) is not None:
        bodies.append(message.body)
        await message.ack()
    await queue.delete(if_unused=False, if_empty=False)
    await channel.close()
    return bodies


async def test_a_set_that_starts_at_the_oldest_unsettled_delivery_is_acked_with_one_multiple_ack(
    connection: AbstractRobustConnection, unique: str
) -> None:
    queue_name = f"test.settlements.{unique}"
    channel, messages, settlements = await deliveries(connection, queue_name, 6)
    await settlements.ack(messages[:3])
    # One frame: only the highest is marked processed by aio-pika, the others were covered by it.
    assert [m.processed for m in messages[:3]] == [False, False, True]
    await settlements.ack([messages[4], messages[5]])  # messages[3] is unsettled: one by one
    assert messages[4].processed and messages[5].processed
    await settlements.nack([messages[3]])
    assert settlements.unsettled() == 0
    await settlements.ack([messages[1]])  # settled already: nothing sent (the broker would close the channel)
    await settlements.nack([messages[4]])
    await asyncio.sleep(0.2)
    assert not channel.is_closed
    await channel.close()
    await asyncio.sleep(0.2)
    assert await left_in_queue(connection, queue_name) == [b"3"]  # the nacked one, and only it


async def test_a_set_with_a_gap_below_it_is_acked_one_by_one_and_the_gap_stays_unsettled(
    connection: AbstractRobustConnection, unique: str
) -> None:
    queue_name = f"test.settlements.{unique}"
    channel, messages, settlements = await deliveries(connection, queue_name, 5)
    await settlements.ack([messages[1], messages[2], messages[4]])
    assert all(messages[n].processed for n in (1, 2, 4))
    assert settlements.unsettled() == 2
    await channel.close()  # the unsettled go back to the queue
    await asyncio.sleep(0.2)
    assert sorted(await left_in_queue(connection, queue_name)) == [b"0", b"3"]


async def test_deliveries_of_a_closed_channel_are_forgotten_not_settled_and_leave_the_new_ones_alone(
    connection: AbstractRobustConnection, unique: str
) -> None:
    """After a reconnect the old channel's deliveries come back on the new one, with tags that start again."""
    old_channel, old, settlements = await deliveries(connection, f"test.settlements.{unique}", 3)
    await old_channel.close()  # the broker requeues the three
    new_channel, new, _ = await deliveries(connection, f"test.settlements.{unique}.b", 3)
    for message in new:
        settlements.delivered(message)
    assert [m.delivery_tag for m in new] == [m.delivery_tag for m in old]  # the same tags, another channel
    await settlements.ack(old)  # neither sent nor raising (a closed channel's message raises on `.channel`)
    await settlements.nack(old)
    assert settlements.unsettled() == 3
    await settlements.ack(new)  # one multiple ack: the old channel's tags are no gap below them
    assert [m.processed for m in new] == [False, False, True]
    assert settlements.unsettled() == 0
    await asyncio.sleep(0.2)
    assert not new_channel.is_closed
    await new_channel.close()
    await asyncio.sleep(0.2)
    assert sorted(await left_in_queue(connection, f"test.settlements.{unique}")) == [b"0", b"1", b"2"]
    assert await left_in_queue(connection, f"test.settlements.{unique}.b") == []
