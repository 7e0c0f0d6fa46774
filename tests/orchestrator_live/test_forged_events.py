"""Forged and malformed events at the registry: refused by the apply script, the job left as it was."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator.store.registry import DEFAULT_MAX_TASKS_PER_JOB, RedisTaskRegistry
from protocol.envelope import new_id
from protocol.events import ATTEMPT_SEQ_STRIDE, EventType
from tests.records import event_for, make_record

RUNNING = {"status": "running"}
SEQ = ATTEMPT_SEQ_STRIDE  # attempt 1 numbers its events SEQ + 1, SEQ + 2, ...


async def test_the_root_task_claimed_by_another_service_is_refused(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant, job_type="embedding_request", service="embedding")
    await registry.create(record)
    forged = event_for(record, EventType.TASK_COMPLETED, SEQ + 1, service="query", result={"answer": "forged"})
    assert (await registry.apply(forged)).dropped == "wrong_service"
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.status == "queued" and stored.result is None
    real = event_for(record, EventType.TASK_COMPLETED, SEQ + 1, result={"embeddings": [[0.5]]})
    assert (await registry.apply(real)).update is not None


async def test_a_child_task_claimed_by_another_service_is_refused(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant, job_type="agent_execution", service="agent")
    await registry.create(record)
    child = new_id()
    started = event_for(record, EventType.TASK_STATUS_UPDATE, SEQ + 1, task_id=child, service="query", **RUNNING)
    assert (await registry.apply(started)).update is not None
    forged = event_for(record, EventType.TASK_COMPLETED, SEQ + 2, task_id=child, service="ingestion", result="x")
    assert (await registry.apply(forged)).dropped == "wrong_service"
    done = event_for(record, EventType.TASK_COMPLETED, SEQ + 2, task_id=child, service="query", result="real")
    assert (await registry.apply(done)).update is not None
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.delegated_services[-1] == {
        "service": "query",
        "task_id": child,
        "status": "completed",
    }


async def test_new_task_ids_are_capped_per_job(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant, job_type="agent_execution", service="agent")
    await registry.create(record)
    forged = [
        event_for(record, EventType.TASK_STATUS_UPDATE, SEQ + 1, task_id=new_id(), service="query", **RUNNING)
        for _ in range(DEFAULT_MAX_TASKS_PER_JOB + 100)
    ]
    outcomes = await asyncio.gather(*(registry.apply(event) for event in forged))
    assert sum(o.update is not None for o in outcomes) == DEFAULT_MAX_TASKS_PER_JOB - 1  # the root is one
    assert {o.dropped for o in outcomes if o.update is None} == {"too_many_tasks"}
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and len(stored.delegated_services) == DEFAULT_MAX_TASKS_PER_JOB
    # Tasks already recorded and the root still move; the job still ends.
    known = forged[0].model_copy(update={"event": EventType.TASK_COMPLETED, "seq": SEQ + 2, "data": {"result": 1}})
    assert (await registry.apply(known)).update is not None
    done = await registry.apply(event_for(record, EventType.TASK_COMPLETED, SEQ + 1, result="ok"))
    assert done.update is not None and done.update.terminal


async def test_the_cap_is_a_setting(redis_client: Any, tenant: str) -> None:
    registry = RedisTaskRegistry(redis_client, ttl_seconds=600, max_tasks_per_job=3)
    record = make_record(tenant, job_type="agent_execution", service="agent")
    await registry.create(record)
    children = [
        event_for(record, EventType.TASK_STATUS_UPDATE, SEQ + 1, task_id=new_id(), service="query", **RUNNING)
        for _ in range(3)
    ]
    assert [(await registry.apply(e)).dropped for e in children] == [None, None, "too_many_tasks"]


async def test_a_seq_far_beyond_the_tasks_attempt_is_refused(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant)
    await registry.create(record)
    assert (await registry.apply(event_for(record, EventType.TASK_STATUS_UPDATE, SEQ + 1, **RUNNING))).update
    for seq in (2**62, 2**64 - 1, 2**53, 5000 * SEQ):
        forged = event_for(record, EventType.TASK_STATUS_UPDATE, seq, **RUNNING)
        assert (await registry.apply(forged)).dropped == "seq_out_of_range", seq
    # The attempt that runs still ends the job, and a later attempt (a retry) is still accepted.
    assert (await registry.apply(event_for(record, EventType.TASK_STATUS_UPDATE, 3 * SEQ + 1, **RUNNING))).update
    done = await registry.apply(event_for(record, EventType.TASK_COMPLETED, 3 * SEQ + 2, result="ok"))
    assert done.update is not None and done.update.status == "completed"


async def test_a_first_event_of_a_later_attempt_is_accepted(registry: RedisTaskRegistry, tenant: str) -> None:
    """Attempts whose events never reached the registry (crashes before the running event) are no leap."""
    record = make_record(tenant)
    await registry.create(record)
    assert (await registry.apply(event_for(record, EventType.TASK_STATUS_UPDATE, 40 * SEQ + 1, **RUNNING))).update


async def test_a_huge_attempt_in_the_data_does_not_break_the_record(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant)
    await registry.create(record)
    forged = event_for(record, EventType.TASK_STATUS_UPDATE, SEQ + 1, status="running", attempt=10**15)
    await registry.apply(forged)
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.attempt == 1
    retry = event_for(record, EventType.TASK_STATUS_UPDATE, 2 * SEQ + 1, status="running", attempt=2)
    assert (await registry.apply(retry)).update is not None
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.attempt == 2


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        (EventType.TASK_STATUS_UPDATE, {"status": "completed"}),
        (EventType.TASK_STATUS_UPDATE, {"status": "cancelled"}),
        (EventType.TASK_FAILED, {"status": "running", "error": "x"}),
        (EventType.TASK_FAILED, {"status": "completed", "error": "x"}),
        (EventType.STEP_PROGRESS, {"status": "failed"}),
        (EventType.WORKFLOW_FAILED, {"status": "completed"}),
    ],
)
async def test_an_event_whose_type_and_status_disagree_is_refused(
    registry: RedisTaskRegistry, tenant: str, kind: EventType, data: dict[str, Any]
) -> None:
    record = make_record(tenant)
    await registry.create(record)
    assert (await registry.apply(event_for(record, kind, SEQ + 1, **data))).dropped == "invalid_status"
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.status == "queued"


async def test_an_event_for_a_tenant_that_does_not_exist_is_dropped(registry: RedisTaskRegistry, tenant: str) -> None:
    record = make_record(tenant)
    await registry.create(record)
    elsewhere = event_for(record, EventType.TASK_COMPLETED, SEQ + 1, result="x").model_copy(
        update={"tenant_id": tenant + "-nobody"}
    )
    assert (await registry.apply(elsewhere)).dropped == "unknown_job"
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.status == "queued"
