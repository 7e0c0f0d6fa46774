"""Event batch messages through the real consumer: each event inside applied, checked and refused as if it had
come alone, and the message settled whole, once (acked when all its events are recorded, retried whole)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import cast

import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractIncomingMessage

from orchestrator.broker.event_windows import MAX_WINDOW_EVENTS, next_window
from orchestrator.models import JobRecord
from protocol.codec import JSON, MSGPACK
from protocol.event_batch import BATCH_HEADER, MAX_BATCH_EVENTS
from protocol.events import EventType, TaskEvent
from tests.orchestrator_live.event_rig import (
    CODECS,
    RedisDownForWindows,
    Rig,
    drop_tenant,
    nothing_redelivered,
    sample,
)
from tests.polling import eventually
from tests.records import event_for, make_record


def completed(record: JobRecord, seq: int = 1) -> TaskEvent:
    return event_for(record, EventType.TASK_COMPLETED, seq, result={"job": record.job_id})


def encoded(events: Sequence[TaskEvent], content_type: str = MSGPACK) -> list[bytes]:
    return [CODECS.encode(event, CODECS.for_content_type(content_type)) for event in events]


async def created(rig: Rig, tenant: str, count: int) -> list[JobRecord]:
    records = [make_record(tenant) for _ in range(count)]
    for record in records:
        await rig.registry.create(record)
    return records


async def completed_in_registry(rig: Rig, record: JobRecord) -> bool:
    stored = await rig.registry.get(record.tenant_id, record.job_id)
    return stored is not None and stored.status == "completed" and stored.result == {"job": record.job_id}


@pytest.fixture
async def other_tenant(redis_client: aioredis.Redis, unique: str) -> AsyncIterator[str]:
    tenant_id = f"t2-{unique}"
    yield tenant_id
    await drop_tenant(redis_client, tenant_id)


async def test_a_batch_applies_each_of_its_events_announces_them_and_is_acked_once(rig: Rig, tenant: str) -> None:
    records = await created(rig, tenant, 8)
    consumer = rig.consumer()
    await consumer.start()
    try:
        key = f"{tenant}.query.task_completed"
        await rig.publish_batch(key, encoded([completed(r) for r in records[:5]]))
        await rig.publish_batch(key, encoded([completed(r) for r in records[5:]], JSON), JSON)
        await eventually(lambda: len(rig.updates) == 8)
    finally:
        await consumer.stop()
    assert [(u.job_id, u.status) for u in rig.updates] == [(r.job_id, "completed") for r in records]  # packed order
    for record in records:
        assert await completed_in_registry(rig, record)
    assert sample(rig.metrics, "baton_jobs_finished_total", type="llm_request", status="completed") == 8
    await nothing_redelivered(rig)


async def test_an_item_under_another_tenants_routing_key_is_refused_the_rest_of_its_batch_applied(
    rig: Rig, tenant: str, other_tenant: str
) -> None:
    mine, theirs = await created(rig, tenant, 2), await created(rig, other_tenant, 1)
    consumer = rig.consumer()
    await consumer.start()
    try:
        items = [completed(mine[0]), completed(theirs[0]), completed(mine[1])]
        await rig.publish_batch(f"{tenant}.query.task_completed", encoded(items))
        await eventually(lambda: len(rig.updates) == 2)
        await eventually(lambda: sample(rig.metrics, "baton_events_dropped_total", reason="routing_mismatch") == 1)
    finally:
        await consumer.stop()
    assert [u.job_id for u in rig.updates] == [mine[0].job_id, mine[1].job_id]
    stored = await rig.registry.get(other_tenant, theirs[0].job_id)
    assert stored is not None and stored.status == "queued"
    await nothing_redelivered(rig)


async def test_undecodable_items_are_counted_and_dropped_the_rest_of_their_batch_applied(
    rig: Rig, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    records = await created(rig, tenant, 2)
    consumer = rig.consumer()
    await consumer.start()
    try:
        [first, second] = encoded([completed(r) for r in records])
        not_an_event = CODECS.default.dumpb({"event": "task_completed", "seq": "nope"})
        await rig.publish_batch(f"{tenant}.query.task_completed", [first, b"\xc1 not msgpack", not_an_event, second])
        await eventually(lambda: len(rig.updates) == 2)
    finally:
        await consumer.stop()
    assert sample(rig.metrics, "baton_events_dropped_total", reason="undecodable") == 2
    for record in records:
        assert await completed_in_registry(rig, record)
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]  # no retry can fix bytes
    await nothing_redelivered(rig)


async def test_a_batch_body_that_does_not_unpack_or_holds_nothing_believable_is_acked_and_counted(
    rig: Rig, tenant: str, other_tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    [record] = await created(rig, tenant, 1)
    [theirs] = await created(rig, other_tenant, 1)
    consumer = rig.consumer()
    await consumer.start()
    try:
        key = f"{tenant}.query.task_completed"
        await rig.publish(key, b"\xc1 not a batch", headers={"x-baton-batch": 2})
        await rig.publish(key, CODECS.encode(completed(record)), headers={"x-baton-batch": 1})  # an event, unpacked
        await rig.publish_batch(key, encoded([completed(theirs)]))  # its only event forged
        await rig.publish_event(event_for(record, EventType.TASK_STATUS_UPDATE, 1, status="running"))
        await eventually(lambda: len(rig.updates) == 1)
        await eventually(lambda: sample(rig.metrics, "baton_events_dropped_total", reason="undecodable") == 2)
    finally:
        await consumer.stop()
    assert sample(rig.metrics, "baton_events_dropped_total", reason="routing_mismatch") == 1
    assert [(u.job_id, u.status) for u in rig.updates] == [(record.job_id, "running")]
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    await nothing_redelivered(rig)


async def test_a_batch_is_retried_whole_when_the_engine_failed_on_one_of_its_events_then_acked_once(
    rig: Rig, tenant: str
) -> None:
    """Its other events, applied the first time, are dropped by the registry as stale on the retry: announced
    once, and heard again by the workflow engine (a no-op for it); the message is acked once, after."""
    record, other, plain = await created(rig, tenant, 3)
    heard: list[tuple[str, int]] = []

    async def engine(event: TaskEvent) -> None:
        heard.append((event.global_task_id, event.seq))
        if heard.count((record.job_id, 1)) == 1 and event.global_task_id == record.job_id:
            raise RuntimeError("the engine failed")

    def step(job: JobRecord) -> TaskEvent:
        return event_for(job, EventType.TASK_STATUS_UPDATE, 1, task_id=f"{job.job_id}:s:1", status="running")

    consumer = rig.consumer(on_step_event=engine)
    await consumer.start()
    try:
        items = [step(record), step(other), event_for(plain, EventType.TASK_STATUS_UPDATE, 1, status="running")]
        await rig.publish_batch(f"{tenant}.query.task_status_update", encoded(items))
        await eventually(lambda: heard.count((record.job_id, 1)) == 2)
        await eventually(lambda: sample(rig.metrics, "baton_events_dropped_total", reason="stale") == 3)
    finally:
        await consumer.stop()
    assert sorted(heard) == sorted([(record.job_id, 1), (other.job_id, 1)] * 2)
    assert [(u.job_id, u.seq) for u in rig.updates] == [(record.job_id, 2), (other.job_id, 2), (plain.job_id, 2)]
    assert sample(rig.metrics, "baton_events_applied_total", event="task_status_update") == 3
    await nothing_redelivered(rig)


async def test_a_batch_that_meets_redis_down_is_retried_once_not_once_per_event(
    rig: Rig, redis_client: aioredis.Redis, tenant: str
) -> None:
    registry = RedisDownForWindows(redis_client, windows=1)
    records = await created(rig, tenant, 4)
    consumer = rig.consumer(registry)
    await consumer.start()
    try:
        await rig.publish_batch(f"{tenant}.query.task_completed", encoded([completed(r) for r in records]))
        await eventually(lambda: len(rig.updates) == 4)
        await asyncio.sleep(0.5)  # past the retry delay: a second copy of the message would be applied by now
    finally:
        await consumer.stop()
    assert registry.calls == 2
    assert sample(rig.metrics, "baton_events_dropped_total", reason="stale") == 0
    assert sample(rig.metrics, "baton_events_dropped_total", reason="job_terminal") == 0
    await nothing_redelivered(rig)


def test_a_window_takes_deliveries_up_to_its_cap_in_events_counting_a_batch_as_its_declared_events() -> None:
    def delivery(headers: dict[str, object] | None) -> AbstractIncomingMessage:
        return cast(AbstractIncomingMessage, SimpleNamespace(headers=headers))

    singles = [delivery(None) for _ in range(MAX_WINDOW_EVENTS + 5)]
    window, rest = next_window(singles)
    assert (window, rest) == (singles[:MAX_WINDOW_EVENTS], singles[MAX_WINDOW_EVENTS:])

    batches = [delivery({BATCH_HEADER: MAX_BATCH_EVENTS}) for _ in range(3)]
    window, rest = next_window([*batches, delivery(None)])
    assert len(window) == 2 and len(rest) == 2  # 512 events, then the next window

    # A header that is not a batch's count counts as one event (such a batch is refused when decoded).
    huge, odd = delivery({BATCH_HEADER: 10_000}), delivery({BATCH_HEADER: "many"})
    assert next_window([huge, odd, *singles[:3]]) == ([huge, odd, *singles[:3]], [])
