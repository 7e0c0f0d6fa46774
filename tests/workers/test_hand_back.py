"""A graceful stop hands back the deliveries that never started, as the same attempt."""

from __future__ import annotations

import asyncio
from typing import Any

from aio_pika.abc import AbstractChannel

from protocol.envelope import TaskEnvelope
from protocol.events import EventType
from protocol.topology import task_queue
from tests.workers.helpers import CODECS, Tap, envelope, publish_task, settings, wait_for_ready
from workers import TaskContext, Worker
from workers.runtime import WorkerRuntime


def one_at_a_time(service: str, started: asyncio.Event, release: asyncio.Event, calls: list[str]) -> Worker:
    worker = Worker(service, concurrency=1, prefetch=4)

    @worker.handler("hold")
    async def hold(payload: dict[str, Any], ctx: TaskContext) -> str:
        started.set()
        await release.wait()
        return "held"

    @worker.handler("record")
    async def record(payload: dict[str, Any], ctx: TaskContext) -> int:
        calls.append(ctx.task_id)
        return ctx.attempt

    return worker


async def test_graceful_stop_hands_back_unstarted_tasks_unchanged(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[str] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    held = envelope(service, "hold", {})
    waiting = [envelope(service, "record", {"i": 0}), envelope(service, "record", {"i": 1}, priority=7)]
    reply_to = f"baton.reply.caller-{service}"
    runtime = WorkerRuntime(one_at_a_time(service, started, release, calls), settings(rabbitmq_url))
    await runtime.start()
    try:
        await publish_task(channel, held)
        await asyncio.wait_for(started.wait(), 10)
        for task in waiting:
            await publish_task(channel, task, reply_to=reply_to, priority=task.priority)
        await wait_for_ready(channel, service)  # prefetched, waiting for the one slot
        stopping = asyncio.create_task(runtime.stop(grace_seconds=10))
        await wait_for_ready(channel, service, count=len(waiting))  # handed back while the held one still runs
        release.set()  # the started task finishes within the grace period
        await stopping
        events = await tap.task_events(held.task_id)
    finally:
        release.set()
        await runtime.stop()

    assert events[-1].event is EventType.TASK_COMPLETED
    assert calls == []
    assert tap.drain_events() == []  # nothing said about the handed-back tasks: they never started
    queue = await channel.declare_queue(task_queue(service), passive=True)
    returned = {}
    for _ in waiting:
        message = await queue.get(timeout=5, fail=True)
        assert message is not None
        await message.ack()
        returned[message.message_id] = message
    assert await queue.get(fail=False) is None
    for task in waiting:
        message = returned[task.task_id]
        # Not flagged redelivered: the next worker runs it as attempt 1, not as a crashed run.
        assert not message.redelivered
        assert message.body == CODECS.encode(task)
        assert CODECS.decode(TaskEnvelope, message.body, message.content_type).attempt == 1
        assert (message.reply_to, message.priority) == (reply_to, task.priority)
    assert runtime.stats.handed_back == len(waiting)
