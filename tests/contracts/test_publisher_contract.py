"""What the job side relies on from a TaskPublisher, checked on FakeTaskPublisher and on RabbitMQ."""

from __future__ import annotations

import pytest

from orchestrator.errors import BrokerUnavailable, UnpublishableJob
from orchestrator.jobs.ports import TaskPublisher
from protocol.control import CancelCommand
from protocol.envelope import TaskEnvelope
from protocol.topology import lane_queue, task_queue
from tests.contracts.subjects import CONTRACT_MAX_MESSAGE_BYTES


def envelope(service: str, **payload: object) -> TaskEnvelope:
    return TaskEnvelope(
        global_task_id="job-1", tenant_id="t1", type="echo_request", service=service, priority=7, payload=payload
    )


async def test_a_published_task_is_confirmed_into_its_tenants_declared_lane(
    publisher: TaskPublisher, service: str
) -> None:
    assert publisher.connected
    missing = f"baton.missing-{service}"
    assert await publisher.queue_stats([missing]) == {missing: None}
    assert await publisher.lane_queues([service]) == {service: []}
    first = envelope(service, text="hi")
    await publisher.publish_task(first)
    await publisher.publish_task(first.next_attempt(), body=publisher.encode_task(first.next_attempt()))
    lane = lane_queue(service, "t1")
    assert await publisher.lane_queues([service]) == {service: [lane]}
    stats = await publisher.queue_stats([lane, missing])
    assert stats[missing] is None
    queued = stats[lane]
    assert queued is not None and queued.messages == 2 and queued.consumers == 0


async def test_a_cancel_broadcast_needs_no_listener(publisher: TaskPublisher) -> None:
    await publisher.publish_cancel(CancelCommand(tenant_id="t1", global_task_id="job-1"))


def test_an_envelope_over_the_message_cap_is_unpublishable(publisher: TaskPublisher, service: str) -> None:
    fits = publisher.encode_task(envelope(service, text="x" * (CONTRACT_MAX_MESSAGE_BYTES // 2)))
    assert len(fits) <= CONTRACT_MAX_MESSAGE_BYTES
    with pytest.raises(UnpublishableJob) as refused:
        publisher.encode_task(envelope(service, text="x" * CONTRACT_MAX_MESSAGE_BYTES))
    assert refused.value.too_large


def test_a_value_the_wire_cannot_carry_is_unpublishable(publisher: TaskPublisher, service: str) -> None:
    with pytest.raises(UnpublishableJob) as refused:
        publisher.encode_task(envelope(service, n=2**64))
    assert not refused.value.too_large


async def test_without_a_broker_every_call_is_refused_at_once_and_nothing_was_sent(
    down_publisher: TaskPublisher,
) -> None:
    assert not down_publisher.connected
    with pytest.raises(BrokerUnavailable) as refused:
        await down_publisher.publish_task(envelope("echo"))
    assert refused.value.maybe_sent is False  # the caller may undo the job
    with pytest.raises(BrokerUnavailable):
        await down_publisher.publish_cancel(CancelCommand(tenant_id="t1", global_task_id="job-1"))
    with pytest.raises(BrokerUnavailable):
        await down_publisher.queue_stats([task_queue("echo")])
    assert down_publisher.encode_task(envelope("echo"))  # encoding needs no broker
