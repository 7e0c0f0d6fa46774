"""JobRecovery.reopen against the real Redis: who may get a new attempt, and what older attempts may still do."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from orchestrator.jobs.recovery import JobRecovery, ReopenStatus
from orchestrator.models import JobRecord
from orchestrator.store.registry import RedisTaskRegistry
from protocol.envelope import TaskEnvelope, new_id
from protocol.events import ATTEMPT_SEQ_STRIDE, EventType
from tests.records import event_for, make_record

SEQ = ATTEMPT_SEQ_STRIDE  # attempt 1 numbers its events SEQ + 1, SEQ + 2, ...
RUNNING = {"status": "running"}
FAILED = {"error": "boom", "error_type": "RuntimeError", "attempts": 1, "status": "failed"}


@pytest.fixture
def recovery(redis_client: aioredis.Redis) -> JobRecovery:
    return JobRecovery(redis_client, ttl_seconds=600)


def envelope_of(record: JobRecord, *, task_id: str | None = None, service: str | None = None) -> TaskEnvelope:
    return TaskEnvelope(
        task_id=task_id or record.root_task_id,
        global_task_id=record.job_id,
        tenant_id=record.tenant_id,
        type=record.type,
        service=service or record.service,
        priority=record.priority,
    )


async def _job(
    registry: RedisTaskRegistry, tenant: str, *events: tuple[EventType, int, dict[str, object]]
) -> JobRecord:
    record = make_record(tenant, job_type="agent_execution", service="agent")
    await registry.create(record)
    for kind, seq, data in events:
        assert await registry.apply_event(event_for(record, kind, seq, **data)) is not None
    return record


async def test_a_replay_reopens_only_a_failed_or_timed_out_root_task(
    registry: RedisTaskRegistry, recovery: JobRecovery, tenant: str
) -> None:
    queued = await _job(registry, tenant)
    running = await _job(registry, tenant, (EventType.TASK_STATUS_UPDATE, SEQ + 1, RUNNING))
    retrying = await _job(registry, tenant, (EventType.TASK_STATUS_UPDATE, SEQ + 1, {"status": "retrying"}))
    completed = await _job(registry, tenant, (EventType.TASK_COMPLETED, SEQ + 1, {"result": 1}))
    for record, status in ((queued, "queued"), (running, "running"), (retrying, "retrying"), (completed, "completed")):
        before = await registry.get(tenant, record.job_id)
        refused = await recovery.reopen(envelope_of(record), reason="replay", min_attempt=2)
        assert (refused.status, refused.job_status) == (ReopenStatus.REFUSED, status)
        assert await registry.get(tenant, record.job_id) == before  # untouched

    for data in (FAILED, {**FAILED, "status": "timed_out"}):
        ended = await _job(registry, tenant, (EventType.TASK_FAILED, SEQ + 1, data))
        reopened = await recovery.reopen(envelope_of(ended), reason="replay", min_attempt=2)
        assert reopened.status is ReopenStatus.REOPENED and reopened.envelope is not None
        assert reopened.envelope.attempt == 2
        assert reopened.record is not None and reopened.record.status == "queued"


async def test_only_the_sweeper_reopens_a_queued_job_and_only_as_it_saw_it(
    registry: RedisTaskRegistry, recovery: JobRecovery, tenant: str
) -> None:
    queued = await _job(registry, tenant)
    changed = await recovery.reopen(envelope_of(queued), reason="lost", expected_seq=queued.seq + 1)
    assert (changed.status, changed.job_status) == (ReopenStatus.CHANGED, "queued")
    reopened = await recovery.reopen(envelope_of(queued), reason="lost", expected_seq=queued.seq)
    assert reopened.status is ReopenStatus.REOPENED and reopened.record is not None

    running = await _job(registry, tenant, (EventType.TASK_STATUS_UPDATE, SEQ + 1, RUNNING))
    stored = await registry.get(tenant, running.job_id)
    assert stored is not None
    refused = await recovery.reopen(envelope_of(running), reason="lost", expected_seq=stored.seq)
    assert (refused.status, refused.job_status) == (ReopenStatus.REFUSED, "running")


async def test_a_child_task_is_replayed_only_once_it_ended_within_an_open_job(
    registry: RedisTaskRegistry, recovery: JobRecovery, tenant: str
) -> None:
    record = await _job(registry, tenant, (EventType.TASK_STATUS_UPDATE, SEQ + 1, RUNNING))
    child = envelope_of(record, task_id=new_id(), service="query")
    unknown = await recovery.reopen(child, reason="replay", min_attempt=2)
    assert (unknown.status, unknown.task_status) == (ReopenStatus.REFUSED, "unknown")

    child_running = event_for(
        record, EventType.TASK_STATUS_UPDATE, SEQ + 1, task_id=child.task_id, service="query", **RUNNING
    )
    assert await registry.apply_event(child_running) is not None
    live = await recovery.reopen(child, reason="replay", min_attempt=2)
    assert (live.status, live.job_status, live.task_status) == (ReopenStatus.REFUSED, "running", "running")

    child_failed = event_for(record, EventType.TASK_FAILED, SEQ + 2, task_id=child.task_id, service="query", **FAILED)
    assert await registry.apply_event(child_failed) is not None
    reopened = await recovery.reopen(child, reason="replay", min_attempt=2)
    assert reopened.status is ReopenStatus.REOPENED and reopened.record is not None
    assert reopened.record.status == "running"  # a child does not move the job
    assert reopened.record.delegated_services[-1] == {"service": "query", "task_id": child.task_id, "status": "queued"}

    await registry.cancel(tenant, record.job_id, "done with it")
    ended = await recovery.reopen(child, reason="replay", min_attempt=3)
    assert (ended.status, ended.job_status) == (ReopenStatus.REFUSED, "cancelled")


async def test_events_of_an_older_attempt_never_touch_a_reopened_job(
    registry: RedisTaskRegistry, recovery: JobRecovery, tenant: str
) -> None:
    record = await _job(registry, tenant, (EventType.TASK_STATUS_UPDATE, SEQ + 1, RUNNING))
    failed = event_for(record, EventType.TASK_FAILED, SEQ + 2, **FAILED)
    assert await registry.apply_event(failed) is not None
    reopened = await recovery.reopen(envelope_of(record), reason="replay", min_attempt=2)
    assert reopened.status is ReopenStatus.REOPENED and reopened.record is not None

    # The first attempt's outcome delivered again, and its report that a slow consumer let trail behind.
    assert (await registry.apply(failed)).dropped == "stale"
    trailing = event_for(record, EventType.TASK_STATUS_UPDATE, SEQ + 3, progress={"percentage": 99.0}, **RUNNING)
    assert (await registry.apply(trailing)).dropped == "stale"
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and (stored.status, stored.seq) == ("queued", reopened.record.seq)

    second = await registry.apply_event(event_for(record, EventType.TASK_STATUS_UPDATE, 2 * SEQ + 1, **RUNNING))
    assert second is not None and second.status == "running"
    done = await registry.apply_event(event_for(record, EventType.TASK_COMPLETED, 2 * SEQ + 2, result="second"))
    assert done is not None and done.terminal and done.status == "completed"
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and (stored.status, stored.result, stored.attempt) == ("completed", "second", 2)
