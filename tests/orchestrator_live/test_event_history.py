"""A job's event history on the real Redis: every seq once and in order, whatever made it, and bounded."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from orchestrator.jobs.recovery import JobRecovery, ReopenStatus
from orchestrator.models import JobRecord, JobUpdate, created_update
from orchestrator.store import keys
from orchestrator.store.event_history import EventHistory, HistoryRead
from orchestrator.store.registry import RedisTaskRegistry
from protocol.envelope import TaskEnvelope
from protocol.events import ATTEMPT_SEQ_STRIDE, EventType
from tests.records import event_for, make_record

SEQ = ATTEMPT_SEQ_STRIDE  # attempt 1 numbers its events SEQ + 1, SEQ + 2, ...
RUNNING = {"status": "running"}
HALF = {"percentage": 50.0}
FAILED = {"error": "boom", "error_type": "RuntimeError", "attempts": 1, "status": "failed"}


async def kept(redis: aioredis.Redis, record: JobRecord) -> list[dict[str, Any]]:
    entries = await redis.lrange(keys.job_events(record.tenant_id, record.job_id), 0, -1)
    return [json.loads(entry) for entry in entries]


async def applied(registry: RedisTaskRegistry, record: JobRecord, kind: EventType, seq: int, **data: Any) -> JobUpdate:
    update = await registry.apply_event(event_for(record, kind, seq, **data))
    assert update is not None
    return update


def root_envelope(record: JobRecord) -> TaskEnvelope:
    return TaskEnvelope(
        task_id=record.root_task_id,
        global_task_id=record.job_id,
        tenant_id=record.tenant_id,
        type=record.type,
        service=record.service,
        priority=record.priority,
    )


async def test_every_seq_is_kept_in_order_through_children_a_failure_and_a_retry(
    redis_client: aioredis.Redis, tenant: str
) -> None:
    registry = RedisTaskRegistry(redis_client, ttl_seconds=600)
    recovery = JobRecovery(redis_client, ttl_seconds=600)
    record = make_record(tenant)
    await registry.create(record)
    child = {"task_id": f"{record.root_task_id}-child", "service": "tool"}
    updates = [
        await applied(registry, record, EventType.TASK_STATUS_UPDATE, SEQ + 1, status="running"),
        await applied(registry, record, EventType.TASK_STATUS_UPDATE, SEQ + 2, status="running", progress=HALF),
    ]
    for kind, seq, data in (
        (EventType.TASK_STATUS_UPDATE, SEQ + 1, {"status": "running"}),
        (EventType.TASK_COMPLETED, SEQ + 2, {"result": "child done"}),
    ):
        update = await registry.apply_event(event_for(record, kind, seq, **child, **data))
        assert update is not None
        updates.append(update)
    # A repeat is dropped, and so never kept twice.
    assert await registry.apply_event(event_for(record, EventType.TASK_STATUS_UPDATE, SEQ + 2, **RUNNING)) is None
    updates.append(await applied(registry, record, EventType.TASK_FAILED, SEQ + 3, **FAILED))
    reopened = await recovery.reopen(root_envelope(record), reason="replayed")
    assert reopened.status is ReopenStatus.REOPENED and reopened.update is not None
    updates.append(reopened.update)
    updates.append(await applied(registry, record, EventType.TASK_STATUS_UPDATE, 2 * SEQ + 1, status="running"))
    updates.append(await applied(registry, record, EventType.TASK_COMPLETED, 2 * SEQ + 2, result="ok"))

    history = await kept(redis_client, record)
    assert history == [created_update(record).event, *(update.event for update in updates)]
    assert [event["seq"] for event in history] == list(range(1, len(history) + 1))
    statuses = [(event["event"], event["job_status"]) for event in history]
    assert statuses == [
        ("task_status_update", "queued"),
        ("task_status_update", "running"),
        ("task_status_update", "running"),  # progress
        ("task_status_update", "running"),
        ("task_completed", "running"),  # the child's end: the job runs on
        ("task_failed", "failed"),
        ("task_status_update", "queued"),  # the retry
        ("task_status_update", "running"),
        ("task_completed", "completed"),
    ]
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.seq == history[-1]["seq"]


async def test_a_cancel_and_a_stuck_failure_are_kept_as_announced(redis_client: aioredis.Redis, tenant: str) -> None:
    registry = RedisTaskRegistry(redis_client, ttl_seconds=600)
    recovery = JobRecovery(redis_client, ttl_seconds=600)
    cancelled, stuck = make_record(tenant), make_record(tenant)
    for record in (cancelled, stuck):
        await registry.create(record)
    running = await applied(registry, cancelled, EventType.TASK_STATUS_UPDATE, SEQ + 1, status="running")
    _, update = await registry.cancel(tenant, cancelled.job_id, "no longer needed")
    assert update is not None
    history = await kept(redis_client, cancelled)
    assert history[1:] == [running.event, update.event]
    assert history[-1]["job_status"] == "cancelled" and history[-1]["task_id"] == cancelled.root_task_id
    assert history[-1]["service"] == cancelled.service and history[-1]["seq"] == 3

    failed = await recovery.fail_stuck(stuck, "never picked up")
    assert failed is not None
    assert (await kept(redis_client, stuck))[1:] == [failed.event]
    assert failed.event["job_status"] == "failed" and failed.event["seq"] == 2


async def test_history_is_bounded_and_read_after_a_seq(redis_client: aioredis.Redis, tenant: str) -> None:
    registry = RedisTaskRegistry(redis_client, ttl_seconds=600, history_max=3)
    history = EventHistory(redis_client)
    record = make_record(tenant)
    await registry.create(record)
    for n in range(1, 6):
        await applied(registry, record, EventType.TASK_STATUS_UPDATE, SEQ + n, **RUNNING, progress={"percentage": n})
    assert [event["seq"] for event in await kept(redis_client, record)] == [4, 5, 6]
    ttl = await redis_client.ttl(keys.job_events(tenant, record.job_id))
    assert 0 < ttl <= 600

    trimmed = await history.after(tenant, record.job_id, 1, 100)
    assert trimmed.outcome is HistoryRead.EVENTS and trimmed.seq == 6 and not trimmed.complete
    assert [json.loads(entry)["seq"] for entry in trimmed.entries] == [4, 5, 6]
    reaches = await history.after(tenant, record.job_id, 3, 100)
    assert reaches.complete and [json.loads(entry)["seq"] for entry in reaches.entries] == [4, 5, 6]
    page = await history.after(tenant, record.job_id, 3, 2)
    assert page.complete and [json.loads(entry)["seq"] for entry in page.entries] == [4, 5]
    current = await history.after(tenant, record.job_id, 6, 100)
    assert current.complete and current.entries == () and current.seq == 6

    beyond = await history.after(tenant, record.job_id, 7, 100)
    assert beyond.outcome is HistoryRead.BEYOND and beyond.seq == 6
    assert (await history.after(tenant, "no-such-job", 0, 100)).outcome is HistoryRead.NOT_FOUND
    assert (await history.after(f"{tenant}-other", record.job_id, 0, 100)).outcome is HistoryRead.NOT_FOUND


async def test_a_discarded_job_leaves_no_history(redis_client: aioredis.Redis, tenant: str) -> None:
    registry = RedisTaskRegistry(redis_client, ttl_seconds=600)
    record = make_record(tenant)
    await registry.create(record)
    assert len(await kept(redis_client, record)) == 1
    await registry.discard(tenant, record.job_id)
    assert not await redis_client.exists(keys.job_events(tenant, record.job_id))


async def test_a_gap_left_by_an_older_replica_makes_the_history_incomplete(
    redis_client: aioredis.Redis, tenant: str
) -> None:
    registry = RedisTaskRegistry(redis_client, ttl_seconds=600)
    history = EventHistory(redis_client)
    record = make_record(tenant)
    await registry.create(record)
    await applied(registry, record, EventType.TASK_STATUS_UPDATE, SEQ + 1, **RUNNING)
    # An older replica applies seq 3 and keeps no event of it.
    await redis_client.hincrby(keys.job(tenant, record.job_id), "seq", 1)
    await applied(registry, record, EventType.TASK_STATUS_UPDATE, SEQ + 3, **RUNNING)
    assert [event["seq"] for event in await kept(redis_client, record)] == [1, 2, 4]
    gapped = await history.after(tenant, record.job_id, 1, 100)
    assert gapped.seq == 4 and not gapped.complete
    assert (await history.after(tenant, record.job_id, 3, 100)).complete
