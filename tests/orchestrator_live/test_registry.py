"""RedisTaskRegistry against the real Redis: create, idempotency, listing, events, cancel."""

from __future__ import annotations

import asyncio

import msgpack
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from orchestrator.errors import RegistryUnavailable
from orchestrator.models import CancelStatus, CreateStatus, created_update
from orchestrator.store import keys
from orchestrator.store.codec import packed_args
from orchestrator.store.registry import RedisTaskRegistry
from protocol.envelope import new_id
from protocol.events import ATTEMPT_SEQ_STRIDE, EventType
from tests.records import event_for, make_record, records_created_in_order

RUNNING = {"status": "running"}


async def test_create_then_get_round_trips_every_field(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant, session_id="s-1")
    result = await registry.create(record)
    assert result.status is CreateStatus.CREATED
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None
    assert stored.model_dump(exclude={"delegated_services"}) == record.model_dump(exclude={"delegated_services"})
    assert stored.delegated_services == [{"service": "query", "task_id": record.root_task_id, "status": "queued"}]
    assert result.record == stored
    # The announcement the job's history keeps, handed back so the bus sends the same one.
    assert result.announced == created_update(stored) == result.created_update()


async def test_a_result_with_a_lone_surrogate_is_applied_not_refused(registry: RedisTaskRegistry, tenant: str) -> None:
    """JSON events may carry one as an escape; refusing it would requeue the event forever."""
    record = make_record(tenant)
    await registry.create(record)
    outcome = await registry.apply(event_for(record, EventType.TASK_COMPLETED, 5, result={"text": "a\ud83db"}))
    assert outcome.update is not None and outcome.update.status == "completed"
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.result == {"text": "a\ud83db"}


async def test_a_job_is_invisible_to_another_tenant(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant)
    await registry.create(record)
    assert await registry.get(tenant + "x", record.job_id) is None
    assert await registry.list_jobs(tenant + "x") == ([], 0)


async def test_job_hash_has_the_design_fields_and_a_ttl(
    registry: RedisTaskRegistry, tenant: str, redis_client: aioredis.Redis
) -> None:
    record = make_record(tenant)
    await registry.create(record)
    key = keys.job(tenant, record.job_id)
    fields = {k.decode() for k in await redis_client.hkeys(key) if isinstance(k, bytes)}
    assert {"global_task_id", "tenant_id", "type", "status", "created_at", "updated_at", "seq"} <= fields
    assert {"delegated_services", "progress", "result", "error", "context"} <= fields
    assert 0 < await redis_client.ttl(key) <= 600


async def test_hundred_concurrent_identical_creates_make_one_job(registry: RedisTaskRegistry, tenant: str) -> None:
    records = [make_record(tenant) for _ in range(100)]
    results = await asyncio.gather(*(registry.create(r, idempotency_key="k1", fingerprint="fp") for r in records))
    created = [r for r in results if r.status is CreateStatus.CREATED]
    assert len(created) == 1
    winner = created[0].record.job_id
    assert all(r.status is CreateStatus.EXISTING and r.record.job_id == winner for r in results if r not in created)
    assert (await registry.list_jobs(tenant))[1] == 1


async def test_same_key_with_another_request_conflicts(registry: RedisTaskRegistry, tenant: str) -> None:
    first = make_record(tenant)
    await registry.create(first, idempotency_key="k", fingerprint="a")
    again = await registry.create(make_record(tenant), idempotency_key="k", fingerprint="b")
    assert again.status is CreateStatus.CONFLICT
    assert again.record.job_id == first.job_id
    other_tenant = make_record(tenant + "o")
    try:
        elsewhere = await registry.create(other_tenant, idempotency_key="k", fingerprint="b")
        assert elsewhere.status is CreateStatus.CREATED
    finally:
        await registry.discard(other_tenant.tenant_id, other_tenant.job_id)


async def test_discard_frees_the_key_and_the_indexes(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant, session_id="s")
    await registry.create(record, idempotency_key="k", fingerprint="f")
    await registry.discard(tenant, record.job_id)
    assert await registry.get(tenant, record.job_id) is None
    assert await registry.list_jobs(tenant) == ([], 0)
    assert await registry.list_jobs(tenant, session_id="s") == ([], 0)
    assert await registry.list_jobs(tenant, status="queued") == ([], 0)
    retry = make_record(tenant)
    assert (await registry.create(retry, idempotency_key="k", fingerprint="f")).status is CreateStatus.CREATED


async def test_list_pages_newest_first_with_filters(registry: RedisTaskRegistry, tenant: str) -> None:
    llm = records_created_in_order(tenant, 5, session_id="s1")
    emb = records_created_in_order(tenant, 3, ago_seconds=50, job_type="embedding_request", service="embedding")
    for record in llm + emb:
        await registry.create(record)
    every = sorted(llm + emb, key=lambda r: r.created_at, reverse=True)

    page, total = await registry.list_jobs(tenant, offset=2, limit=3)
    assert total == 8
    assert [r.job_id for r in page] == [r.job_id for r in every[2:5]]

    page, total = await registry.list_jobs(tenant, type="embedding_request")
    assert total == 3 and [r.job_id for r in page] == [r.job_id for r in reversed(emb)]

    await registry.apply_event(event_for(llm[0], EventType.TASK_STATUS_UPDATE, 1, **RUNNING))
    page, total = await registry.list_jobs(tenant, status="running")
    assert total == 1 and page[0].job_id == llm[0].job_id
    assert (await registry.list_jobs(tenant, status="queued"))[1] == 7

    page, total = await registry.list_jobs(tenant, session_id="s1", status="queued", offset=1, limit=2)
    assert total == 4
    assert [r.job_id for r in page] == [r.job_id for r in reversed(llm[1:])][1:3]


async def test_list_prunes_jobs_whose_hash_expired(
    registry: RedisTaskRegistry, tenant: str, redis_client: aioredis.Redis
) -> None:
    kept, gone = make_record(tenant), make_record(tenant)
    await registry.create(kept)
    await registry.create(gone)
    await redis_client.delete(keys.job(tenant, gone.job_id))
    page, total = await registry.list_jobs(tenant)
    assert [r.job_id for r in page] == [kept.job_id]
    assert total == 1


async def test_root_events_move_the_job_and_seq_only_grows(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant)
    await registry.create(record)
    running = await registry.apply_event(event_for(record, EventType.TASK_STATUS_UPDATE, 1, **RUNNING))
    assert running is not None and running.seq == 2 and running.status == "running" and not running.terminal
    assert running.event["seq"] == 2 and running.event["event"] == "task_status_update"

    progress = {"percentage": 40.0, "message": "working"}
    with_progress = event_for(record, EventType.TASK_STATUS_UPDATE, 2, progress=progress, **RUNNING)
    update = await registry.apply_event(with_progress)
    assert update is not None and update.seq == 3
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.progress == progress and stored.status == "running"

    done = await registry.apply_event(event_for(record, EventType.TASK_COMPLETED, 3, result={"answer": 42}))
    assert done is not None and done.terminal and done.status == "completed" and done.seq == 4
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.result == {"answer": 42} and stored.seq == 4
    assert stored.delegated_services[0]["status"] == "completed"


async def test_stale_duplicate_and_after_terminal_events_are_dropped(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant)
    await registry.create(record)
    assert await registry.apply_event(event_for(record, EventType.TASK_STATUS_UPDATE, 5, **RUNNING))
    assert await registry.apply_event(event_for(record, EventType.TASK_STATUS_UPDATE, 5, **RUNNING)) is None
    assert await registry.apply_event(event_for(record, EventType.TASK_STATUS_UPDATE, 3, **RUNNING)) is None
    failed = event_for(
        record, EventType.TASK_FAILED, 6, error="boom", error_type="ValueError", attempts=1, status="failed"
    )
    assert (await registry.apply_event(failed)) is not None
    late = event_for(record, EventType.TASK_STATUS_UPDATE, 7, progress={"percentage": 99.0}, **RUNNING)
    assert await registry.apply_event(late) is None
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.status == "failed" and stored.seq == 3
    assert stored.error == {"error": "boom", "error_type": "ValueError", "attempts": 1, "status": "failed"}
    assert stored.progress is None


async def test_an_outcome_overtaken_by_a_later_progress_report_still_ends_the_job(
    registry: RedisTaskRegistry, tenant: str
) -> None:
    record = make_record(tenant)
    await registry.create(record)
    overtaking = event_for(record, EventType.TASK_STATUS_UPDATE, 6, progress={"percentage": 99.0}, **RUNNING)
    assert await registry.apply_event(overtaking) is not None
    done = await registry.apply_event(event_for(record, EventType.TASK_COMPLETED, 5, result="ok"))
    assert done is not None and done.terminal and done.status == "completed"
    assert await registry.apply_event(event_for(record, EventType.TASK_COMPLETED, 5, result="again")) is None
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.result == "ok" and stored.seq == 3


async def test_a_child_outcome_is_final_within_its_attempt(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant, job_type="agent_execution", service="agent")
    await registry.create(record)
    child = new_id()
    progress = event_for(record, EventType.TASK_STATUS_UPDATE, 4, task_id=child, service="query", **RUNNING)
    assert await registry.apply_event(progress) is not None
    failed = event_for(
        record, EventType.TASK_FAILED, 3, task_id=child, service="query", error="x", error_type="E", status="failed"
    )
    assert await registry.apply_event(failed) is not None
    completed = event_for(record, EventType.TASK_COMPLETED, 5, task_id=child, service="query", result="late")
    assert await registry.apply_event(completed) is None
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.delegated_services[-1]["status"] == "failed"


async def test_a_retry_attempt_is_not_stale(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant)
    await registry.create(record)
    await registry.apply_event(event_for(record, EventType.TASK_STATUS_UPDATE, ATTEMPT_SEQ_STRIDE + 3, **RUNNING))
    retry = event_for(record, EventType.TASK_STATUS_UPDATE, 2 * ATTEMPT_SEQ_STRIDE + 1, **RUNNING)
    update = await registry.apply_event(retry)
    assert update is not None and update.seq == 3


async def test_unknown_job_is_dropped(registry: RedisTaskRegistry, tenant: str) -> None:
    ghost = make_record(tenant)
    assert await registry.apply_event(event_for(ghost, EventType.TASK_STATUS_UPDATE, 1, **RUNNING)) is None


async def test_child_tasks_are_tracked_without_moving_the_job(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant, job_type="agent_execution", service="agent")
    await registry.create(record)
    await registry.apply_event(event_for(record, EventType.TASK_STATUS_UPDATE, 1, **RUNNING))
    child = new_id()
    started = await registry.apply_event(
        event_for(record, EventType.TASK_STATUS_UPDATE, 1, task_id=child, service="query", **RUNNING)
    )
    assert started is not None and started.status == "running" and started.seq == 3
    finished = await registry.apply_event(
        event_for(record, EventType.TASK_COMPLETED, 2, task_id=child, service="query", result="child")
    )
    assert finished is not None and not finished.terminal and finished.status == "running"
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.status == "running" and stored.result is None
    assert stored.delegated_services == [
        {"service": "agent", "task_id": record.root_task_id, "status": "running"},
        {"service": "query", "task_id": child, "status": "completed"},
    ]


async def test_cancel_semantics(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant)
    await registry.create(record)
    await registry.apply_event(event_for(record, EventType.TASK_STATUS_UPDATE, 1, **RUNNING))
    result, update = await registry.cancel(tenant, record.job_id, "user asked")
    assert result.status is CancelStatus.CANCELLED and result.record is not None
    assert result.record.status == "cancelled"
    assert result.record.error == {"reason": "user asked", "status": "cancelled"}
    assert update is not None and update.terminal and update.seq == 3
    assert update.event["event"] == "task_cancelled" and update.event["data"]["reason"] == "user asked"

    again, none = await registry.cancel(tenant, record.job_id, "twice")
    assert again.status is CancelStatus.ALREADY_TERMINAL and none is None
    assert again.record is not None and again.record.seq == 3
    assert await registry.apply_event(event_for(record, EventType.TASK_COMPLETED, 2, result=1)) is None
    assert (await registry.list_jobs(tenant, status="cancelled"))[1] == 1
    assert (await registry.cancel(tenant, new_id(), "x"))[0].status is CancelStatus.NOT_FOUND


async def test_created_update_announces_queued_with_seq_one(tenant: str) -> None:
    record = make_record(tenant)
    update = created_update(record)
    assert (update.seq, update.status, update.terminal) == (1, "queued", False)
    assert update.event["event"] == "task_status_update" and update.event["seq"] == 1
    assert update.event["task_id"] == record.root_task_id and update.event["data"] == {"status": "queued"}


async def test_redis_down_is_registry_unavailable(tenant: str) -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(RegistryUnavailable):
            await RedisTaskRegistry(dead).get(tenant, "x")
        with pytest.raises(RegistryUnavailable):
            await RedisTaskRegistry(dead).ping()
    finally:
        await dead.aclose()


def test_packed_script_arguments_are_the_texts_redis_would_have_received() -> None:
    assert msgpack.unpackb(packed_args(["job-1", 86_400, 1.5, ""])) == ["job-1", "86400", "1.5", ""]
