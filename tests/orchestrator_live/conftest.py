"""Fixtures of the live-state tests: a fresh tenant per test, its Redis keys deleted afterwards."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from orchestrator.models import JobRecord
from orchestrator.store.registry import RedisTaskRegistry
from protocol.envelope import new_id, utc_now
from protocol.events import EventType, TaskEvent


@pytest.fixture
async def tenant(redis_client: aioredis.Redis, unique: str) -> AsyncIterator[str]:
    tenant_id = f"t-{unique}"
    yield tenant_id
    for pattern in (f"orchestrator:*:{tenant_id}:*", f"orchestrator:jobs:{tenant_id}"):
        async for key in redis_client.scan_iter(match=pattern, count=1000):
            await redis_client.delete(key)


@pytest.fixture
def registry(redis_client: aioredis.Redis) -> RedisTaskRegistry:
    return RedisTaskRegistry(redis_client, ttl_seconds=600)


def make_record(
    tenant_id: str,
    *,
    job_type: str = "llm_request",
    service: str = "query",
    session_id: str | None = None,
    created_at: datetime | None = None,
) -> JobRecord:
    created = (created_at or utc_now()).isoformat()
    return JobRecord(
        global_task_id=new_id(),
        tenant_id=tenant_id,
        session_id=session_id,
        type=job_type,
        service=service,
        root_task_id=new_id(),
        priority=5,
        status="queued",
        created_at=created,
        updated_at=created,
        seq=1,
        context={"request_id": "r-1"},
    )


def records_created_in_order(tenant_id: str, count: int, *, ago_seconds: int = 100, **kwargs: Any) -> list[JobRecord]:
    """`count` records created one second apart, the first `ago_seconds` ago."""
    start = utc_now() - timedelta(seconds=ago_seconds)
    return [make_record(tenant_id, created_at=start + timedelta(seconds=i), **kwargs) for i in range(count)]


def event_for(
    record: JobRecord,
    kind: EventType,
    seq: int,
    *,
    task_id: str | None = None,
    service: str | None = None,
    **data: Any,
) -> TaskEvent:
    return TaskEvent(
        event=kind,
        service=service or record.service,
        task_id=task_id or record.root_task_id,
        global_task_id=record.global_task_id,
        tenant_id=record.tenant_id,
        seq=seq,
        data=data,
    )


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float = 10.0) -> None:
    """Wait until `check` holds; fails the test (TimeoutError) after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            outcome = check()
            if inspect.isawaitable(outcome):
                outcome = await outcome
            if outcome:
                return
            await asyncio.sleep(0.02)
