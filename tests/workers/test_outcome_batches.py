"""Worker(batch_outcomes=True): the outcomes of one loop turn leave as one message per routing key
(workers.runtime.outcome_batches), every caller learning its own message's confirm; on a real broker,
a burst of tasks ends in fewer messages than tasks, each outcome in exactly one of them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractChannel
from aiormq import spec

from protocol.event_batch import BATCH_HEADER, MAX_BATCH_EVENTS, is_event_batch, pack_event_batch, unpack_event_batch
from protocol.events import EventType, TaskEvent, completed_event
from protocol.topology import declare_service
from tests.workers.helpers import CODECS, Tap, envelope, publish_task, running
from workers import TaskContext, Worker
from workers.errors import BrokerError, ConfigurationError
from workers.runtime.event_publisher import EventPublisher
from workers.runtime.outcome_batches import OutcomeBatches

Sent = tuple[str, bytes, spec.Basic.Properties]


class FakeChannel:
    """Records each message; fails those whose routing key is in `failing`."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.sent: list[Sent] = []
        self.failing = failing

    async def send(self, routing_key: str, body: bytes, properties: spec.Basic.Properties) -> None:
        self.sent.append((routing_key, body, properties))
        await asyncio.sleep(0)  # the confirm comes in a later turn
        if routing_key in self.failing:
            raise BrokerError(f"nacked: {routing_key}")


def outcome_properties(task_id: str) -> spec.Basic.Properties:
    return spec.Basic.Properties(content_type="application/msgpack", delivery_mode=2, message_id=task_id)


async def test_outcomes_of_one_turn_share_a_message_per_routing_key_in_publish_order() -> None:
    channel = FakeChannel()
    batches = OutcomeBatches(channel.send, max_bytes=1 << 20)
    key = "t.svc.task_completed"
    confirms = [batches.publish(key, f"body-{n}".encode(), outcome_properties(f"t{n}")) for n in range(3)]
    confirms.append(batches.publish("t.svc.task_failed", b"failed", outcome_properties("t9")))
    await asyncio.gather(*confirms)

    assert [(key, props.headers) for key, _, props in channel.sent] == [
        ("t.svc.task_completed", {BATCH_HEADER: 3}),
        ("t.svc.task_failed", None),
    ]
    _, batch, props = channel.sent[0]
    assert unpack_event_batch(batch, 1 << 20) == [b"body-0", b"body-1", b"body-2"]
    assert (props.content_type, props.delivery_mode) == ("application/msgpack", 2)
    # A lone outcome leaves as a plain single-event message, with its own properties.
    assert channel.sent[1][1:] == (b"failed", outcome_properties("t9"))
    assert batches.messages == 2


async def test_nothing_waits_for_a_batch_to_fill() -> None:
    channel = FakeChannel()
    batches = OutcomeBatches(channel.send, max_bytes=1 << 20)
    await batches.publish("t.svc.task_completed", b"first", outcome_properties("a"))
    await batches.publish("t.svc.task_completed", b"second", outcome_properties("b"))
    assert [body for _, body, _ in channel.sent] == [b"first", b"second"]


async def test_while_a_round_waits_for_its_confirm_the_next_gathers_what_ends_meanwhile() -> None:
    confirm = asyncio.Event()
    sent: list[bytes] = []

    async def send(routing_key: str, body: bytes, properties: spec.Basic.Properties) -> None:
        sent.append(body)
        await confirm.wait()

    batches = OutcomeBatches(send, max_bytes=1 << 20)
    first = batches.publish("k", b"first", outcome_properties("a"))
    await asyncio.sleep(0.01)
    later = [batches.publish("k", f"later-{n}".encode(), outcome_properties(str(n))) for n in range(3)]
    await asyncio.sleep(0.01)
    assert sent == [b"first"]  # the others wait for its confirm, not for a batch to fill
    assert not first.done()
    confirm.set()
    await asyncio.gather(first, *later)
    assert sent[1:] == [pack_event_batch([b"later-0", b"later-1", b"later-2"])]


async def test_a_batch_never_holds_more_events_or_bytes_than_the_reader_takes() -> None:
    channel = FakeChannel()
    batches = OutcomeBatches(channel.send, max_bytes=1 << 20)
    await asyncio.gather(*(batches.publish("k", b"x", outcome_properties(str(n))) for n in range(MAX_BATCH_EVENTS + 3)))
    assert [props.headers for _, _, props in channel.sent] == [{BATCH_HEADER: MAX_BATCH_EVENTS}, {BATCH_HEADER: 3}]

    small = FakeChannel()
    capped = OutcomeBatches(small.send, max_bytes=2_500)
    await asyncio.gather(*(capped.publish("k", b"y" * 1_000, outcome_properties(str(n))) for n in range(5)))
    assert [len(body) for _, body, _ in small.sent] == [2_007, 2_007, 1_000]  # 2 + 2 in batches, the last alone
    assert all(len(body) <= 2_500 for _, body, _ in small.sent)


async def test_every_caller_learns_the_failure_of_its_own_message_only() -> None:
    channel = FakeChannel(failing=frozenset({"t.svc.task_failed"}))
    batches = OutcomeBatches(channel.send, max_bytes=1 << 20)
    good = [batches.publish("t.svc.task_completed", b"ok", outcome_properties(str(n))) for n in range(2)]
    bad = [batches.publish("t.svc.task_failed", b"no", outcome_properties(str(n))) for n in range(2)]
    results = await asyncio.gather(*good, *bad, return_exceptions=True)
    assert results[:2] == [None, None]
    assert all(isinstance(r, BrokerError) for r in results[2:])


async def test_a_caller_that_gives_up_leaves_the_others_their_confirm() -> None:
    channel = FakeChannel()
    batches = OutcomeBatches(channel.send, max_bytes=1 << 20)
    abandoned = batches.publish("k", b"a", outcome_properties("a"))
    kept = batches.publish("k", b"b", outcome_properties("b"))
    abandoned.cancel()
    await kept
    assert channel.sent[0][2].headers == {BATCH_HEADER: 2}  # queued before the cancel: it still goes


def test_batch_outcomes_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="batch_outcomes must be True or False"):
        Worker("svc", batch_outcomes="yes")  # type: ignore[arg-type]
    assert Worker("svc").batch_outcomes is False


def burst_worker(service: str, *, batch_outcomes: bool) -> Worker:
    worker = Worker(service, concurrency=32, track_started=False, batch_outcomes=batch_outcomes)

    @worker.handler("work")
    async def work(payload: dict[str, Any], ctx: TaskContext) -> int:
        return int(payload["n"])

    return worker


def carried(message: Any) -> list[bytes]:
    """The encoded events a message carries: a batch's items, or its own body."""
    return unpack_event_batch(message.body, CODECS.max_bytes) if is_event_batch(message.headers) else [message.body]


async def outcome_messages(tap: Tap, expected: int) -> tuple[list[TaskEvent], list[Any]]:
    """Every task event of the burst, and the messages that carried them, until `expected` events came."""
    events: list[TaskEvent] = []
    messages = []
    while len(events) < expected:
        message = await tap.next_message(within=15.0)
        if (message.routing_key or "").startswith("_system."):
            continue
        messages.append(message)
        events += [CODECS.decode(TaskEvent, body, message.content_type) for body in carried(message)]
    return events, messages


@pytest.mark.parametrize("batch_outcomes", [True, False], ids=["batched", "one-per-message"])
async def test_a_burst_of_tasks_ends_in_fewer_messages_each_outcome_once(
    rabbitmq_url: str, channel: AbstractChannel, service: str, batch_outcomes: bool
) -> None:
    tap = await Tap.open(channel, f"*.{service}.*")
    tasks = [envelope(service, "work", {"n": n}, global_task_id=f"job-{service}-{n}") for n in range(64)]
    await declare_service(channel, service)
    for task in tasks:  # waiting when the worker starts: its prefetch takes them in a few deliveries
        await publish_task(channel, task)
    async with running(burst_worker(service, batch_outcomes=batch_outcomes), rabbitmq_url):
        events, messages = await outcome_messages(tap, len(tasks))
        await asyncio.sleep(0.3)
        assert tap.drain_events() == []  # nothing more: no outcome was sent twice

    assert sorted(e.task_id for e in events) == sorted(t.task_id for t in tasks)
    assert {e.event for e in events} == {EventType.TASK_COMPLETED}
    assert {e.data["result"] for e in events} == set(range(64))
    assert all(m.delivery_mode == DeliveryMode.PERSISTENT for m in messages)
    for message in messages:  # the routing key says what every event inside says
        for body in carried(message):
            event = CODECS.decode(TaskEvent, body, message.content_type)
            assert message.routing_key == f"{event.tenant_id}.{event.service}.task_completed"
    if batch_outcomes:
        assert len(messages) < len(tasks)
        assert any(is_event_batch(m.headers) for m in messages)
    else:
        assert len(messages) == len(tasks)
        assert not any(is_event_batch(m.headers) for m in messages)


class FlakyAmqp:
    """An AmqpPublisher whose first `failures` sends fail as a broker hiccup would."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[tuple[str, spec.Basic.Properties]] = []

    async def send(
        self, exchange: str, routing_key: str, body: bytes, properties: spec.Basic.Properties, *, mandatory: bool
    ) -> None:
        self.sent.append((routing_key, properties))
        if self.failures:
            self.failures -= 1
            raise BrokerError("connection reset")


async def test_a_batched_outcome_is_published_again_after_a_broker_hiccup() -> None:
    amqp = FlakyAmqp(failures=1)
    publisher = EventPublisher(amqp, CODECS, batch_outcomes=True)  # type: ignore[arg-type]
    env = envelope("svc", "work", {})
    outcomes = [completed_event(env.model_copy(update={"task_id": f"t{n}"}), n, 2) for n in range(2)]
    assert await asyncio.gather(*(publisher.publish_outcome(event, None) for event in outcomes)) == [True, True]
    # One batch failed; each caller retried after the delay, and their retries shared a batch again.
    assert [props.headers for _, props in amqp.sent] == [{BATCH_HEADER: 2}, {BATCH_HEADER: 2}]
