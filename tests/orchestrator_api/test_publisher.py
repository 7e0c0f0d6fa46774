"""TaskPublisher on its own: fails fast without a broker, confirms and reports with one."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import aio_pika
import pytest

from orchestrator.broker.publisher import APP_ID, TaskPublisher
from orchestrator.errors import BrokerUnavailable, PublishFailed
from protocol.codec import MSGPACK, CodecSet
from protocol.control import CancelCommand
from protocol.envelope import TaskEnvelope
from protocol.topology import service_queues, task_queue
from tests.polling import eventually
from tests.services import relocated_url
from tests.tcp_proxy import TcpProxy

CLOSED_PORT_URL = "amqp://guest:guest@127.0.0.1:1/"


def _envelope(service: str) -> TaskEnvelope:
    return TaskEnvelope(global_task_id="job-1", tenant_id="t1", type="echo_request", service=service, priority=7)


async def test_without_a_broker_it_starts_and_refuses_at_once() -> None:
    publisher = TaskPublisher(CLOSED_PORT_URL, CodecSet(), reconnect_interval=0.05)
    started = time.monotonic()
    await publisher.start()
    try:
        assert not publisher.connected
        with pytest.raises(BrokerUnavailable) as refused:
            await publisher.publish_task(_envelope("echo"))
        assert refused.value.maybe_sent is False  # nothing was sent: the caller may undo the job
        with pytest.raises(BrokerUnavailable):
            await publisher.publish_cancel(CancelCommand(tenant_id="t1", global_task_id="job-1"))
        with pytest.raises(BrokerUnavailable):
            await publisher.queue_stats(["baton.echo"])
        assert time.monotonic() - started < 1.0
    finally:
        await publisher.close()  # also stops the background reconnect loop


async def test_publishes_confirmed_envelopes_and_reports_queues(rabbitmq_url: str, unique: str) -> None:
    service = f"pub-{unique}"
    publisher = TaskPublisher(rabbitmq_url, CodecSet(), connection_name=f"test-publisher-{unique}")
    await publisher.start()
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        assert publisher.connected
        missing = f"baton.missing-{unique}"
        assert await publisher.queue_stats([missing]) == {missing: None}
        envelope = _envelope(service)
        await publisher.publish_task(envelope)
        await publisher.publish_task(envelope.next_attempt())
        stats = await publisher.queue_stats([missing, task_queue(service)])
        assert stats[missing] is None
        assert stats[task_queue(service)] is not None and stats[task_queue(service)].messages == 2  # type: ignore[union-attr]
        # Nobody listening on baton.control is fine for a broadcast.
        await publisher.publish_cancel(CancelCommand(tenant_id="t1", global_task_id="job-1"))

        channel = await connection.channel()
        queue = await channel.declare_queue(task_queue(service), passive=True)
        message = await queue.get(no_ack=True)
        assert message.message_id == envelope.task_id
        assert message.correlation_id == "job-1"
        assert message.priority == 7
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert (message.type, message.app_id, message.content_type) == (envelope.type, APP_ID, MSGPACK)
        assert message.timestamp == envelope.created_at.replace(microsecond=0)  # AMQP keeps whole seconds
        assert CodecSet().decode(TaskEnvelope, message.body, message.content_type) == envelope
    finally:
        await publisher.close()
        channel = await connection.channel()
        for name in (spec.name for spec in service_queues(service)):
            await channel.queue_delete(name)
        await connection.close()
    assert not publisher.connected


async def test_a_refused_publish_is_known_unsent(rabbitmq_url: str, unique: str) -> None:
    service = f"pub-{unique}"
    publisher = TaskPublisher(rabbitmq_url, CodecSet(), connection_name=f"test-publisher-{unique}")
    await publisher.start()
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        await publisher.publish_task(_envelope(service))  # declares the queues
        channel = await connection.channel()
        await channel.queue_delete(task_queue(service))
        with pytest.raises(PublishFailed) as unroutable:
            await publisher.publish_task(_envelope(service))
        assert (unroutable.value.reason, unroutable.value.maybe_sent) == ("unroutable", False)
    finally:
        await publisher.close()
        channel = await connection.channel()
        for name in (spec.name for spec in service_queues(service)):
            await channel.queue_delete(name)
        await connection.close()


async def test_a_broker_that_answers_late_is_connected_in_the_background(rabbitmq_url: str, unique: str) -> None:
    target = urlsplit(rabbitmq_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    proxy.blackhole()  # connects, but the broker never answers
    url = relocated_url(rabbitmq_url, proxy.port)
    publisher = TaskPublisher(
        url, CodecSet(), connect_timeout=0.3, reconnect_interval=0.05, connection_name=f"test-late-{unique}"
    )
    try:
        await publisher.start()
        assert not publisher.connected
        await asyncio.sleep(0.5)  # a few attempts time out meanwhile
        assert not publisher.connected
        proxy.heal()
        await eventually(lambda: publisher.connected, what="connected once the broker answered")
    finally:
        await publisher.close()
        await proxy.close()


async def test_concurrent_publishes_share_socket_writes_and_are_all_confirmed(rabbitmq_url: str, unique: str) -> None:
    """One confirming channel, publishes at once: their frames leave together, each confirm still awaited.

    aiormq queues at most 10 frames for its writer, so bursts of 8 are what can go out as one write.
    """
    service = f"pub-{unique}"
    publisher = TaskPublisher(rabbitmq_url, CodecSet(), connection_name=f"test-publisher-{unique}")
    await publisher.start()
    try:
        await publisher.publish_task(_envelope(service))  # declares the service's queues first
        assert publisher._link is not None
        transport = publisher._link.connection.transport_factory.current  # type: ignore[attr-defined]
        sends = 0
        for burst in range(5):
            envelopes = [
                TaskEnvelope(global_task_id=f"job-{burst}-{i}", tenant_id="t1", type="echo_request", service=service)
                for i in range(8)
            ]
            before = transport.sends
            await asyncio.gather(*(publisher.publish_task(envelope) for envelope in envelopes))
            sends += transport.sends - before
        stats = await publisher.queue_stats([task_queue(service)])
        assert stats[task_queue(service)] is not None and stats[task_queue(service)].messages == 41  # type: ignore[union-attr]
        assert sends <= 10  # 40 publishes: a write or two per burst, not one each
    finally:
        connection = await aio_pika.connect(rabbitmq_url)
        channel = await connection.channel()
        for name in (spec.name for spec in service_queues(service)):
            await channel.queue_delete(name)
        await connection.close()
        await publisher.close()
