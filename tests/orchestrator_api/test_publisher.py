"""TaskPublisher on its own: fails fast without a broker, confirms and reports with one."""

from __future__ import annotations

import time

import aio_pika
import pytest

from orchestrator.errors import BrokerUnavailable
from orchestrator.publisher import TaskPublisher
from protocol.codec import CodecSet
from protocol.control import CancelCommand
from protocol.envelope import TaskEnvelope
from protocol.topology import dead_letter_queue, task_queue

CLOSED_PORT_URL = "amqp://guest:guest@127.0.0.1:1/"


def _envelope(service: str) -> TaskEnvelope:
    return TaskEnvelope(global_task_id="job-1", tenant_id="t1", type="echo_request", service=service, priority=7)


async def test_without_a_broker_it_starts_and_refuses_at_once() -> None:
    publisher = TaskPublisher(CLOSED_PORT_URL, CodecSet(), reconnect_interval=0.05)
    started = time.monotonic()
    await publisher.start()
    try:
        assert not publisher.connected
        with pytest.raises(BrokerUnavailable):
            await publisher.publish_task(_envelope("echo"))
        with pytest.raises(BrokerUnavailable):
            await publisher.publish_cancel(CancelCommand(tenant_id="t1", global_task_id="job-1"))
        with pytest.raises(BrokerUnavailable):
            await publisher.queue_stats(["baton.echo"])
        assert time.monotonic() - started < 1.0
    finally:
        await publisher.close()  # also stops the background reconnect loop


@pytest.mark.integration
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
        assert CodecSet().decode(TaskEnvelope, message.body, message.content_type) == envelope
    finally:
        await publisher.close()
        channel = await connection.channel()
        for name in (task_queue(service), dead_letter_queue(service)):
            await channel.queue_delete(name)
        await connection.close()
    assert not publisher.connected
