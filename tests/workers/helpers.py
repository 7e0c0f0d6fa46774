"""Helpers for the worker integration tests: publishing envelopes, tapping events, running a Worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from plumbing.tracing import Tracing
from protocol.codec import MSGPACK, CodecSet
from protocol.control import CancelCommand, WorkerHeartbeat
from protocol.envelope import TaskEnvelope
from protocol.events import TaskEvent
from protocol.topology import (
    CONTROL_EXCHANGE,
    EVENTS_EXCHANGE,
    SYSTEM_ROUTING_PREFIX,
    TASKS_EXCHANGE,
    service_queues,
    task_queue,
)
from tests.polling import poll
from tests.services import LOCAL_REDIS_URL
from workers.config import WorkerSettings
from workers.runtime import WorkerRuntime
from workers.runtime.late_running import LATE_RUNNING_SECONDS
from workers.sdk import Worker

CODECS = CodecSet()


def envelope(service: str, job_type: str, payload: dict[str, Any], **fields: Any) -> TaskEnvelope:
    fields.setdefault("global_task_id", f"job-{service}-{id(payload)}")
    fields.setdefault("tenant_id", "tenant-a")
    return TaskEnvelope(service=service, type=job_type, payload=payload, **fields)


async def publish_task(
    channel: AbstractChannel,
    env: TaskEnvelope,
    *,
    content_type: str = MSGPACK,
    reply_to: str | None = None,
    priority: int | None = None,
) -> None:
    codec = CODECS.for_content_type(content_type)
    await publish_raw(
        channel,
        env.service,
        CODECS.encode(env, codec),
        content_type=content_type,
        message_id=env.task_id,
        reply_to=reply_to,
        priority=priority,
    )


async def publish_raw(
    channel: AbstractChannel,
    service: str,
    body: bytes,
    *,
    content_type: str | None = MSGPACK,
    message_id: str | None = None,
    reply_to: str | None = None,
    headers: dict[str, Any] | None = None,
    priority: int | None = None,
) -> None:
    exchange = await channel.get_exchange(TASKS_EXCHANGE, ensure=False)
    message = aio_pika.Message(
        body,
        content_type=content_type,
        message_id=message_id,
        reply_to=reply_to,
        headers=headers,
        priority=priority,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    await exchange.publish(message, service, mandatory=True)


async def publish_cancel(channel: AbstractChannel, tenant_id: str, global_task_id: str) -> None:
    exchange = await channel.get_exchange(CONTROL_EXCHANGE, ensure=False)
    command = CancelCommand(tenant_id=tenant_id, global_task_id=global_task_id, reason="cancelled by test")
    await exchange.publish(aio_pika.Message(CODECS.encode(command), content_type=MSGPACK), "")


def _is_system(message: AbstractIncomingMessage) -> bool:
    return (message.routing_key or "").startswith(SYSTEM_ROUTING_PREFIX + ".")


class Tap:
    """An exclusive queue bound to baton.events with one routing pattern; collects decoded messages."""

    def __init__(self, queue: AbstractQueue) -> None:
        self._queue = queue
        self._messages: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    @classmethod
    async def open(cls, channel: AbstractChannel, pattern: str) -> Tap:
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(EVENTS_EXCHANGE, routing_key=pattern)
        tap = cls(queue)
        await queue.consume(tap._messages.put, no_ack=True)
        return tap

    async def next_message(self, within: float = 10.0) -> AbstractIncomingMessage:
        return await asyncio.wait_for(self._messages.get(), within)

    async def next_event(self, within: float = 10.0) -> TaskEvent:
        """The next task event, skipping heartbeats (which `*.<service>.*` also matches)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            message = await self.next_message(max(0.01, deadline - loop.time()))
            if not _is_system(message):
                return CODECS.decode(TaskEvent, message.body, message.content_type)

    async def next_heartbeat(self, within: float = 10.0) -> WorkerHeartbeat:
        message = await self.next_message(within)
        return CODECS.decode(WorkerHeartbeat, message.body, message.content_type)

    async def task_events(self, task_id: str, within: float = 10.0) -> list[TaskEvent]:
        """Events of one task up to and including its terminal one (others are kept for later calls)."""
        events: list[TaskEvent] = []
        others: list[AbstractIncomingMessage] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        try:
            while True:
                message = await self.next_message(max(0.01, deadline - loop.time()))
                if _is_system(message):
                    continue
                event = CODECS.decode(TaskEvent, message.body, message.content_type)
                if event.task_id != task_id:
                    others.append(message)
                    continue
                events.append(event)
                if event.is_terminal:
                    return events
        finally:
            for message in others:
                self._messages.put_nowait(message)

    def drain_events(self) -> list[TaskEvent]:
        """The task events already received and not yet read (heartbeats skipped)."""
        waiting = [self._messages.get_nowait() for _ in range(self._messages.qsize())]
        return [CODECS.decode(TaskEvent, m.body, m.content_type) for m in waiting if not _is_system(m)]


def settings(rabbitmq_url: str, **overrides: Any) -> WorkerSettings:
    overrides.setdefault("heartbeat_seconds", 30.0)
    overrides.setdefault("shutdown_grace_seconds", 5.0)
    # What the `redis_url` fixture resolves to; tests about the ledger pass that fixture explicitly.
    overrides.setdefault("redis_url", os.environ.get("REDIS_URL") or LOCAL_REDIS_URL)
    return WorkerSettings(rabbitmq_url=rabbitmq_url, **overrides)


@contextlib.asynccontextmanager
async def running(
    worker: Worker,
    rabbitmq_url: str,
    *,
    tracing: Tracing | None = None,
    late_running_seconds: float = LATE_RUNNING_SECONDS,
    **overrides: Any,
) -> AsyncIterator[WorkerRuntime]:
    runtime = WorkerRuntime(
        worker, settings(rabbitmq_url, **overrides), tracing=tracing, late_running_seconds=late_running_seconds
    )
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def delete_service_queues(channel: AbstractChannel, *services: str) -> None:
    """Every queue `declare_service` makes for these services: work, dead letters and each retry delay queue."""
    for service in services:
        for spec in service_queues(service):
            await channel.queue_delete(spec.name, if_unused=False, if_empty=False)


async def wait_for_ready(channel: AbstractChannel, service: str, count: int = 0, within: float = 10.0) -> None:
    """Until the service's work queue holds `count` ready messages (0: every one went out to a consumer)."""

    async def ready() -> int | None:
        # On the underlying channel: a robust one answers a passive declare of a known queue from its cache.
        underlay = await channel.get_underlay_channel()
        return (await underlay.queue_declare(task_queue(service), passive=True)).message_count

    await poll(ready, lambda n: n == count, within=within, what=f"{count} message(s) ready on the queue of {service}")
