"""A task waiting for a flow limit, in one worker process: cancelled, timed out, handed back on stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel

from protocol.envelope import TaskEnvelope, utc_now
from protocol.events import EventType, JobStatus
from protocol.flow_limits import LIMITED_SERVICES_KEY, leases_key, rate_key, stats_key
from protocol.topology import task_queue
from tests.polling import eventually
from tests.workers.helpers import CODECS, Tap, envelope, publish_cancel, publish_task, running
from workers import TaskContext, Worker
from workers.runtime import WorkerRuntime


def gated(service: str, started: list[str], **limits: Any) -> Worker:
    worker = Worker(service, concurrency=4, **limits)

    @worker.handler("nap")
    async def nap(payload: dict[str, float], ctx: TaskContext) -> dict[str, bool]:
        started.append(ctx.global_task_id)
        await asyncio.sleep(payload["seconds"])
        return {"ok": True}

    return worker


@pytest.fixture
async def limit_keys(service: str, redis_client: aioredis.Redis) -> AsyncIterator[None]:
    yield
    await redis_client.delete(leases_key(service), rate_key(service), stats_key(service))
    await redis_client.srem(LIMITED_SERVICES_KEY, service)


def waiting_at_gate(runtime: WorkerRuntime) -> int:
    return runtime.flow_gate.waiting if runtime.flow_gate is not None else 0


def job(service: str, name: str, seconds: float, **fields: Any) -> TaskEnvelope:
    return envelope(service, "nap", {"seconds": seconds}, global_task_id=f"{name}-{service}", **fields)


async def test_a_service_without_limits_has_no_gate_and_leaves_no_keys(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, channel: AbstractChannel, service: str
) -> None:
    started: list[str] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(gated(service, started), rabbitmq_url, redis_url=redis_url) as runtime:
        task = job(service, "free", 0)
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id)

    assert runtime.flow_gate is None
    assert events[-1].event is EventType.TASK_COMPLETED
    assert not await redis_client.exists(stats_key(service), leases_key(service), rate_key(service))
    assert not await redis_client.sismember(LIMITED_SERVICES_KEY, service)


async def test_cancelling_a_job_while_its_task_waits_ends_it_cancelled_unrun(
    rabbitmq_url: str, redis_url: str, channel: AbstractChannel, service: str, limit_keys: None
) -> None:
    started: list[str] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(gated(service, started, max_concurrency=1), rabbitmq_url, redis_url=redis_url) as runtime:
        blocker, waiting = job(service, "blocker", 1.5), job(service, "waiting", 0)
        await publish_task(channel, blocker)
        await eventually(lambda: len(started) == 1, within=10, what="the blocker running")
        await publish_task(channel, waiting)
        await eventually(lambda: waiting_at_gate(runtime) == 1, within=10, what="a task waiting at the gate")
        await publish_cancel(channel, waiting.tenant_id, waiting.global_task_id)
        events = await tap.task_events(waiting.task_id, within=1.0)  # at once, not when the blocker ends
        assert [e.event for e in await tap.task_events(blocker.task_id)][-1] is EventType.TASK_COMPLETED

    assert [e.event for e in events] == [EventType.TASK_CANCELLED]
    assert started == [blocker.global_task_id]


async def test_a_task_whose_deadline_passes_while_it_waits_times_out_unrun(
    rabbitmq_url: str, redis_url: str, channel: AbstractChannel, service: str, limit_keys: None
) -> None:
    started: list[str] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(gated(service, started, max_concurrency=1), rabbitmq_url, redis_url=redis_url):
        blocker = job(service, "blocker", 3)
        await publish_task(channel, blocker)
        await eventually(lambda: len(started) == 1, within=10, what="the blocker running")
        late = job(service, "late", 0, deadline=utc_now() + timedelta(seconds=0.8))
        await publish_task(channel, late)
        events = await tap.task_events(late.task_id, within=2.5)  # before the blocker ends

    assert [e.event for e in events] == [EventType.TASK_FAILED]
    assert events[0].data["status"] == JobStatus.TIMED_OUT
    assert "waiting for a flow limit" in events[0].data["error"]
    assert started == [blocker.global_task_id]


async def test_a_graceful_stop_hands_a_waiting_task_back_unstarted(
    rabbitmq_url: str,
    redis_url: str,
    redis_client: aioredis.Redis,
    channel: AbstractChannel,
    service: str,
    limit_keys: None,
) -> None:
    started: list[str] = []
    async with running(
        gated(service, started, rate_limit="1/m", max_concurrency=5),
        rabbitmq_url,
        redis_url=redis_url,
        shutdown_grace_seconds=10,
    ) as runtime:
        first, second = job(service, "first", 0), job(service, "second", 0)
        await publish_task(channel, first)
        await eventually(lambda: len(started) == 1, within=10, what="the first task running")
        await publish_task(channel, second)
        await eventually(lambda: waiting_at_gate(runtime) == 1, within=10, what="a task waiting at the gate")
        loop = asyncio.get_running_loop()
        stop_began = loop.time()
        await runtime.stop()
        stopped_in = loop.time() - stop_began

    assert stopped_in < 5  # not the grace period: a waiting task never started
    assert await redis_client.zcard(leases_key(service)) == 0  # the lease it held for its rate slot too
    assert runtime.stats.handed_back >= 1  # again, should a copy come back before the consumer's cancel
    queue = await channel.declare_queue(task_queue(service), passive=True)
    message = await queue.get(timeout=5, fail=True)
    assert message is not None and not message.redelivered  # the same attempt, as it came
    assert CODECS.decode(TaskEnvelope, message.body, message.content_type).task_id == second.task_id
    assert started == [first.global_task_id]
    await message.ack()
    assert queue.declaration_result.message_count == 0 or (await queue.get(timeout=5, fail=False)) is None
