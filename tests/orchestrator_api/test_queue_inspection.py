"""Queue stats next to task publishes: a missing queue's 404 must never reach the publishing connection.

A passive declare of a missing queue makes RabbitMQ close the channel; aiormq frees the number at
once and drops its Channel.CloseOk when the write queue is full (as concurrent publishes keep it),
so a channel opened next on the same connection got "second 'channel.open' seen" and the broker
closed the connection with every publish on it. Our connections widen that queue
(plumbing.amqp.widen_write_queue), but it stays bounded: the first test keeps aiormq's 10 frames so
that bursts of 12 fill it, as they did when the bug was found.
"""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

import plumbing.amqp
from orchestrator.broker.publisher import TaskPublisher
from orchestrator.broker.queue_inspector import QueueInspector
from orchestrator.errors import PublishFailed
from protocol.codec import CodecSet
from protocol.envelope import TaskEnvelope
from protocol.topology import service_queues, task_queue

BURSTS = 60


async def _delete_queues(rabbitmq_url: str, service: str) -> None:
    connection = await aio_pika.connect(rabbitmq_url)
    channel = await connection.channel()
    for name in (spec.name for spec in service_queues(service)):
        await channel.queue_delete(name)
    await connection.close()


async def test_stats_of_existing_and_missing_queues_never_break_concurrent_publishes(
    rabbitmq_url: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plumbing.amqp, "WRITE_QUEUE_FRAMES", 10)  # aiormq's own bound, which bursts of 12 fill
    service = f"insp-{unique}"
    publisher = TaskPublisher(rabbitmq_url, CodecSet(), connection_name=f"test-inspect-{unique}")
    await publisher.start()
    try:
        assert publisher._link is not None and publisher._link.connection.transport is not None
        assert publisher._link.connection.transport.connection.write_queue.maxsize == 10
        await publisher.publish_task(TaskEnvelope(global_task_id="job-0", tenant_id="t1", type="x", service=service))
        existing = task_queue(service)
        done = asyncio.Event()
        asked = 0

        async def ask_stats(lane: int) -> None:
            nonlocal asked
            while not done.is_set():
                queues = [existing, f"baton.missing-{unique}-{lane}", existing, f"baton.gone-{unique}-{lane}"]
                stats = await publisher.queue_stats(queues)
                assert stats[queues[1]] is None and stats[queues[3]] is None
                assert stats[existing] is not None
                asked += 1
                await asyncio.sleep(0)

        async def publish(i: int) -> None:
            envelope = TaskEnvelope(global_task_id=f"job-{i}", tenant_id="t1", type="x", service=service)
            await publisher.publish_task(envelope)

        askers = [asyncio.create_task(ask_stats(lane)) for lane in range(15)]
        try:
            for burst in range(BURSTS):
                # Bursts of 12 keep aiormq's 10-frame write queue full while channels are closed by 404s.
                await asyncio.gather(*(publish(burst * 12 + i) for i in range(12)))
                await asyncio.sleep(0.005)
        finally:
            done.set()
            await asyncio.gather(*askers)
        assert publisher.connected
        assert asked >= BURSTS
        stats = await publisher.queue_stats([existing])
        assert stats[existing] is not None and stats[existing].messages == 1 + BURSTS * 12  # every publish confirmed
    finally:
        await publisher.close()
        await _delete_queues(rabbitmq_url, service)


async def test_queue_stats_open_no_channel_on_the_publishing_connection(rabbitmq_url: str, unique: str) -> None:
    publisher = TaskPublisher(rabbitmq_url, CodecSet(), connection_name=f"test-inspect-{unique}")
    await publisher.start()
    try:
        assert publisher._link is not None
        underlay = publisher._link.connection.transport
        assert underlay is not None
        publishing = underlay.connection
        numbers_before = publishing.last_channel  # aiormq's highest number handed out
        channels_before = set(publishing.channels)
        await publisher.queue_stats([f"baton.missing-{unique}-{i}" for i in range(10)])
        async with publisher.raw_channel():
            pass
        assert publishing.last_channel == numbers_before
        assert set(publishing.channels) == channels_before
    finally:
        await publisher.close()


async def test_a_closed_channel_number_is_not_taken_again_at_once(rabbitmq_url: str, unique: str) -> None:
    inspector = QueueInspector(rabbitmq_url, f"test-inspect-{unique}", lanes=1)
    try:
        missing = [f"baton.missing-{unique}-{i}" for i in range(5)]
        assert await inspector.queue_stats(missing) == dict.fromkeys(missing)
        opened = []
        for _ in range(3):
            async with inspector.channel() as channel:
                opened.append(channel.number)
        assert opened == [6, 7, 8]  # 1-5 went to the lane channels the 404s closed
    finally:
        await inspector.close()


async def test_the_inspection_connection_comes_back_after_it_was_closed(rabbitmq_url: str, unique: str) -> None:
    inspector = QueueInspector(rabbitmq_url, f"test-inspect-{unique}")
    try:
        assert await inspector.queue_stats([f"baton.missing-{unique}"]) == {f"baton.missing-{unique}": None}
        connection = inspector._connection
        assert connection is not None
        await connection.close()
        assert await inspector.queue_stats([f"baton.missing-{unique}"]) == {f"baton.missing-{unique}": None}
        assert inspector._connection is not connection
    finally:
        await inspector.close()


async def test_a_refused_declare_never_breaks_concurrent_publishes(rabbitmq_url: str, unique: str) -> None:
    """A queue that exists with other arguments makes the broker refuse (406) the publisher's declare,
    which closes that channel: it must not be a channel of the publishing connection."""
    good, clashing = f"good-{unique}", f"clash-{unique}"
    admin = await aio_pika.connect(rabbitmq_url)
    channel = await admin.channel()
    await channel.declare_queue(task_queue(clashing), durable=True)  # no priorities: not Baton's arguments
    publisher = TaskPublisher(rabbitmq_url, CodecSet(), connection_name=f"test-clash-{unique}")
    await publisher.start()
    refused = 0

    async def publish(service: str, i: int) -> None:
        nonlocal refused
        envelope = TaskEnvelope(global_task_id=f"job-{i}", tenant_id="t1", type="x", service=service)
        try:
            await publisher.publish_task(envelope)
        except PublishFailed as exc:
            assert service == clashing and exc.reason == "channel_error" and not exc.maybe_sent, exc
            refused += 1

    try:
        await publish(good, 0)
        for burst in range(BURSTS):
            await asyncio.gather(*(publish(good, burst * 12 + i) for i in range(12)), publish(clashing, burst))
        assert publisher.connected
        assert refused == BURSTS  # said every time, never taken for an outage
        stats = await publisher.queue_stats([task_queue(good)])
        assert stats[task_queue(good)] is not None and stats[task_queue(good)].messages == 1 + BURSTS * 12
    finally:
        await publisher.close()
        await admin.close()
        await _delete_queues(rabbitmq_url, good)
        await _delete_queues(rabbitmq_url, clashing)
