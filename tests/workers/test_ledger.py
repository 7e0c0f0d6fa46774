"""The delivery ledger in Redis: done and cancelled keys, redeliveries as new attempts, Redis down."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from protocol.events import ATTEMPT_SEQ_STRIDE, EventType
from protocol.ledger import LEDGER_TTL_SECONDS, cancelled_key, done_key
from protocol.topology import ERROR_TYPE_HEADER, REASON_HEADER, dead_letter_queue, declare_service, task_queue
from tests.polling import eventually
from tests.workers.helpers import Tap, envelope, publish_task, running, wait_for_ready
from workers import RetryPolicy, TaskContext, Worker
from workers.runtime.ledger import LedgerState, TaskLedger

ROOT = Path(__file__).resolve().parents[2]


def recorder(service: str, calls: list[tuple[str, int]]) -> Worker:
    worker = Worker(service, retry=RetryPolicy(max_retries=2, initial_delay_seconds=0.1, max_delay_seconds=0.1))

    @worker.handler("record")
    async def record(payload: dict[str, Any], ctx: TaskContext) -> int:
        calls.append((ctx.task_id, ctx.attempt))
        return ctx.attempt

    @worker.handler("fragile", retry=RetryPolicy(max_retries=0))
    async def fragile(payload: dict[str, Any], ctx: TaskContext) -> int:
        calls.append((ctx.task_id, ctx.attempt))
        return ctx.attempt

    return worker


async def test_done_task_is_acked_unrun_and_a_finished_one_is_recorded(
    rabbitmq_url: str,
    redis_url: str,
    channel: AbstractChannel,
    service: str,
    redis_client: aioredis.Redis,
    ledger_keys: list[str],
) -> None:
    calls: list[tuple[str, int]] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    already = envelope(service, "record", {})
    fresh = envelope(service, "record", {})
    ledger_keys += [done_key(already.task_id), done_key(fresh.task_id)]
    await redis_client.set(done_key(already.task_id), b"1", ex=60)
    async with running(recorder(service, calls), rabbitmq_url, redis_url=redis_url) as runtime:
        await publish_task(channel, already)
        await publish_task(channel, fresh)
        events = await tap.task_events(fresh.task_id)
        assert runtime.stats.duplicates_skipped == 1

    assert calls == [(fresh.task_id, 1)]
    assert events[-1].event is EventType.TASK_COMPLETED
    assert tap.drain_events() == []  # nothing at all for the done one
    queue = await channel.declare_queue(task_queue(service), passive=True)
    assert await queue.get(fail=False) is None  # both acked
    # The finished one is in the ledger now, for as long as the registry keeps jobs.
    assert await redis_client.get(done_key(fresh.task_id)) == b"1"
    assert LEDGER_TTL_SECONDS - 60 < await redis_client.ttl(done_key(fresh.task_id)) <= LEDGER_TTL_SECONDS


async def test_task_of_a_job_cancelled_in_redis_never_starts(
    rabbitmq_url: str,
    redis_url: str,
    channel: AbstractChannel,
    service: str,
    redis_client: aioredis.Redis,
    ledger_keys: list[str],
) -> None:
    calls: list[tuple[str, int]] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    task = envelope(service, "record", {}, tenant_id="tenant-l", global_task_id=f"job-{service}")
    ledger_keys += [cancelled_key("tenant-l", task.global_task_id), done_key(task.task_id)]
    await redis_client.set(cancelled_key("tenant-l", task.global_task_id), b"1", ex=60)
    async with running(recorder(service, calls), rabbitmq_url, redis_url=redis_url):
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id)

    assert [e.event for e in events] == [EventType.TASK_CANCELLED]
    assert events[0].data == {"status": "cancelled", "reason": "job cancelled"}
    assert calls == []
    assert await redis_client.get(done_key(task.task_id)) == b"1"


async def test_a_new_worker_process_honours_a_cancel_it_never_heard(
    rabbitmq_url: str,
    redis_url: str,
    channel: AbstractChannel,
    service: str,
    redis_client: aioredis.Redis,
    ledger_keys: list[str],
) -> None:
    task = envelope(service, "nap", {"seconds": 30}, tenant_id="tenant-p", global_task_id=f"job-{service}")
    ledger_keys += [cancelled_key("tenant-p", task.global_task_id), done_key(task.task_id)]
    await redis_client.set(cancelled_key("tenant-p", task.global_task_id), b"1", ex=60)
    await declare_service(channel, service)
    await publish_task(channel, task)  # queued before any worker of the service exists
    tap = await Tap.open(channel, f"*.{service}.*")
    env = {
        **os.environ,
        "RABBITMQ_URL": rabbitmq_url,
        "REDIS_URL": redis_url,
        "BATON_TEST_SERVICE": service,
        "BATON_HEARTBEAT_SECONDS": "30",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers",
        "tests.workers.sample_app:build",
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        events = await tap.task_events(task.task_id, within=20)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 20)

    assert [e.event for e in events] == [EventType.TASK_CANCELLED]  # never a running event: the nap never began


async def _make_redelivered(
    amqp: AbstractRobustConnection, channel: AbstractChannel, service: str, *tasks: Any
) -> None:
    """Put tasks in the queue flagged redelivered: take them unacked on a channel, then close it."""
    await declare_service(channel, service)
    for task in tasks:
        await publish_task(channel, task)
    grabber = await amqp.channel()
    queue = await grabber.declare_queue(task_queue(service), passive=True)
    for _ in tasks:
        assert await queue.get(timeout=5, fail=True) is not None
    await grabber.close()  # unacked: the broker requeues them with redelivered=True


async def test_a_redelivered_task_runs_once_as_the_next_attempt_or_is_parked_when_out_of_attempts(
    amqp: AbstractRobustConnection,
    rabbitmq_url: str,
    redis_url: str,
    channel: AbstractChannel,
    service: str,
    redis_client: aioredis.Redis,
    ledger_keys: list[str],
) -> None:
    calls: list[tuple[str, int]] = []
    again = envelope(service, "record", {})
    spent = envelope(service, "fragile", {})  # max_retries=0: a crashed attempt is its last
    ledger_keys += [done_key(again.task_id), done_key(spent.task_id)]
    await _make_redelivered(amqp, channel, service, again, spent)
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(recorder(service, calls), rabbitmq_url, redis_url=redis_url) as runtime:
        again_events = await tap.task_events(again.task_id)
        spent_events = await tap.task_events(spent.task_id)
        # Counted once the republish is confirmed, which can come after the next attempt already ran.
        await eventually(lambda: runtime.stats.redeliveries_republished > 0, within=5.0)
        assert runtime.stats.redeliveries_republished == 1

    assert calls == [(again.task_id, 2)]
    assert again_events[-1].data == {"result": 2}
    assert [e.seq for e in again_events] == [2 * ATTEMPT_SEQ_STRIDE + 1, 2 * ATTEMPT_SEQ_STRIDE + 2]
    assert [(e.event, e.data["error_type"], e.data["attempts"]) for e in spent_events] == [
        (EventType.TASK_FAILED, "WorkerLost", 1)
    ]
    assert spent_events[0].seq == 2 * ATTEMPT_SEQ_STRIDE + 1  # above whatever the lost run of attempt 1 emitted
    dead = await channel.declare_queue(dead_letter_queue(service), passive=True)
    parked = await dead.get(timeout=5, fail=True)
    assert parked is not None
    await parked.ack()
    assert (parked.headers[REASON_HEADER], parked.headers[ERROR_TYPE_HEADER]) == ("max_retries_exceeded", "WorkerLost")


async def test_tasks_complete_while_redis_is_unreachable(
    rabbitmq_url: str, channel: AbstractChannel, service: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[tuple[str, int]] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    tasks = [envelope(service, "record", {"i": i}) for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="workers.runtime.ledger"):
        async with running(recorder(service, calls), rabbitmq_url, redis_url="redis://127.0.0.1:1/0"):
            for task in tasks:
                await publish_task(channel, task)
            outcomes = [(await tap.task_events(task.task_id))[-1] for task in tasks]

    assert [o.event for o in outcomes] == [EventType.TASK_COMPLETED] * 3
    assert sorted(calls) == sorted((t.task_id, 1) for t in tasks)
    warnings = [r.getMessage() for r in caplog.records if r.name == "workers.runtime.ledger"]
    assert len(warnings) == 1 and "running tasks without it" in warnings[0]  # rate-limited


async def test_a_later_attempt_of_a_task_done_in_the_ledger_runs(
    rabbitmq_url: str,
    redis_url: str,
    channel: AbstractChannel,
    service: str,
    redis_client: aioredis.Redis,
    ledger_keys: list[str],
) -> None:
    """A dead-letter replay sends the same task id with a higher attempt: only copies of the
    attempt the ledger holds (or earlier ones) are duplicates."""
    calls: list[tuple[str, int]] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    task = envelope(service, "record", {})
    ledger_keys.append(done_key(task.task_id))
    await redis_client.set(done_key(task.task_id), b"2", ex=60)
    async with running(recorder(service, calls), rabbitmq_url, redis_url=redis_url) as runtime:
        await publish_task(channel, task.model_copy(update={"attempt": 2}))  # a copy of the done attempt
        await publish_task(channel, task.model_copy(update={"attempt": 3}))
        events = await tap.task_events(task.task_id)
        assert runtime.stats.duplicates_skipped == 1

    assert calls == [(task.task_id, 3)]
    assert events[-1].data == {"result": 3}
    assert await redis_client.get(done_key(task.task_id)) == b"3"


async def test_a_replayed_attempt_runs_in_the_process_that_finished_the_first(
    rabbitmq_url: str,
    redis_url: str,
    channel: AbstractChannel,
    service: str,
    redis_client: aioredis.Redis,
    ledger_keys: list[str],
) -> None:
    calls: list[tuple[str, int]] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    task = envelope(service, "record", {})
    ledger_keys.append(done_key(task.task_id))
    async with running(recorder(service, calls), rabbitmq_url, redis_url=redis_url):
        await publish_task(channel, task)
        assert (await tap.task_events(task.task_id))[-1].data == {"result": 1}
        # What the orchestrator's replay does: reopen (which deletes the done key), publish attempt 2.
        await redis_client.delete(done_key(task.task_id))
        await publish_task(channel, task.model_copy(update={"attempt": 2}))
        replayed = await tap.task_events(task.task_id)
        # A late copy of attempt 1 is still a duplicate for this process's own memory.
        await redis_client.delete(done_key(task.task_id))
        await publish_task(channel, task)
        await wait_for_ready(channel, service)

    assert calls == [(task.task_id, 1), (task.task_id, 2)]
    assert replayed[-1].data == {"result": 2}
    assert tap.drain_events() == []
    queue = await channel.declare_queue(task_queue(service), passive=True)
    assert queue.declaration_result.message_count == 0


async def test_the_done_attempt_only_grows(redis_url: str, ledger_keys: list[str]) -> None:
    task = envelope("svc", "record", {})
    ledger_keys.append(done_key(task.task_id))
    ledger = TaskLedger(redis_url)
    try:
        await ledger.mark_done(task.task_id, 3)
        await ledger.mark_done(task.task_id, 2)  # a late duplicate of an older attempt finishing
        states = [await ledger.check(task.model_copy(update={"attempt": n})) for n in (1, 3, 4)]
    finally:
        await ledger.close()

    assert states == [LedgerState.DONE, LedgerState.DONE, LedgerState.CLEAR]
    assert ledger.errors == 0
