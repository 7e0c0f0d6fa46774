"""What the event consumer's tests share: a private exchange and queue, the registry, a bus and its updates."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from orchestrator.broker.event_consumer import EventConsumer
from orchestrator.errors import RegistryUnavailable
from orchestrator.jobs.event_sink import EventSink, StepListener
from orchestrator.live.update_bus import UpdateBus
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.models import JobUpdate
from orchestrator.store.directory import ServiceDirectory
from orchestrator.store.registry import ApplyOutcome, RedisTaskRegistry
from orchestrator.workflows.declared import WorkflowDeclarations
from protocol.codec import MSGPACK, CodecSet
from protocol.event_batch import BATCH_HEADER, pack_event_batch
from protocol.events import TaskEvent
from protocol.topology import event_routing_key
from tests.redis_keys import keys_matching

CODECS = CodecSet()


@dataclass
class Rig:
    connection: AbstractRobustConnection
    publisher: AbstractChannel
    registry: RedisTaskRegistry
    directory: ServiceDirectory
    bus: UpdateBus
    metrics: OrchestratorMetrics
    updates: list[JobUpdate]
    queue_name: str
    exchange: str
    bus_channel: str

    def consumer(
        self,
        registry: RedisTaskRegistry | None = None,
        workflows: WorkflowDeclarations | None = None,
        prefetch: int = 16,
        connection: AbstractRobustConnection | None = None,
        directory: ServiceDirectory | None = None,
        on_step_event: StepListener | None = None,
    ) -> EventConsumer:
        return EventConsumer(
            connection or self.connection,
            EventSink(registry or self.registry, self.bus, self.metrics, on_step_event=on_step_event),
            directory or self.directory,
            self.metrics,
            CODECS,
            prefetch=prefetch,
            queue_name=self.queue_name,
            exchange=self.exchange,
            routing_keys=("#",),
            retry_delay=0.2,
            workflows=workflows,
        )

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        content_type: str = MSGPACK,
        correlation_id: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        exchange = await self.publisher.get_exchange(self.exchange)
        message = aio_pika.Message(
            body,
            headers=headers,
            content_type=content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            correlation_id=correlation_id,
        )
        await exchange.publish(message, routing_key=routing_key)

    async def publish_event(self, event: TaskEvent, content_type: str = MSGPACK) -> None:
        body = CODECS.encode(event, CODECS.for_content_type(content_type))
        key = event_routing_key(event.tenant_id, event.service, event.event)
        await self.publish(key, body, content_type, correlation_id=event.global_task_id)  # as workers do

    async def publish_batch(self, routing_key: str, bodies: Sequence[bytes], content_type: str = MSGPACK) -> None:
        """One event batch message carrying these encoded events (or whatever bytes a test puts in)."""
        await self.publish(routing_key, pack_event_batch(bodies), content_type, headers={BATCH_HEADER: len(bodies)})


class HeldRegistry(RedisTaskRegistry):
    """The real registry, recording each window it is given; the first waits for `go`: before it is
    applied, or with `applied_first` after (Redis ran the script, its answer is not back yet)."""

    def __init__(self, redis: aioredis.Redis, *, applied_first: bool = False) -> None:
        super().__init__(redis, ttl_seconds=600)
        self.windows: list[list[tuple[str, int]]] = []
        self.entered = asyncio.Event()
        self.go = asyncio.Event()
        self._applied_first = applied_first

    async def apply_many(self, events: Sequence[TaskEvent]) -> list[ApplyOutcome]:
        self.windows.append([(event.global_task_id, event.seq) for event in events])
        if len(self.windows) > 1:
            return await super().apply_many(events)
        outcomes = await super().apply_many(events) if self._applied_first else None
        self.entered.set()
        await self.go.wait()
        return outcomes if outcomes is not None else await super().apply_many(events)


def sample(metric: OrchestratorMetrics, name: str, **labels: str) -> float:
    return metric.registry.get_sample_value(name, labels) or 0.0


async def drop_tenant(redis_client: aioredis.Redis, tenant_id: str) -> None:
    """Delete the tenant's registry keys."""
    for pattern in (f"orchestrator:*:{tenant_id}:*", f"orchestrator:jobs:{tenant_id}"):
        for key in await keys_matching(redis_client, pattern):
            await redis_client.delete(key)


class RedisDownForWindows(RedisTaskRegistry):
    """The real registry behind a Redis that fails the first `windows` windows, each after `delay` s."""

    def __init__(self, redis: aioredis.Redis, windows: int, delay: float = 0.0) -> None:
        super().__init__(redis, ttl_seconds=600)
        self.windows = windows
        self.delay = delay
        self.calls = 0

    async def apply_many(self, events: Sequence[TaskEvent]) -> list[ApplyOutcome]:
        self.calls += 1
        if self.calls <= self.windows:
            await asyncio.sleep(self.delay)
            raise RegistryUnavailable("Redis is unavailable (a test's outage)")
        return await super().apply_many(events)


async def queue_drained(rig: Rig) -> bool:
    """No message waits in the rig's queue."""
    queue = await rig.publisher.declare_queue(rig.queue_name, passive=True)
    return bool(queue.declaration_result.message_count == 0)


async def nothing_redelivered(rig: Rig) -> None:
    """Every message was acked: none waits in the queue, and a new consumer is given nothing."""
    assert await queue_drained(rig)
    applied, dropped = len(rig.updates), sample(rig.metrics, "baton_events_dropped_total", reason="stale")
    again = rig.consumer()
    await again.start()
    try:
        await asyncio.sleep(1.0)
    finally:
        await again.stop()
    assert len(rig.updates) == applied
    assert sample(rig.metrics, "baton_events_dropped_total", reason="stale") == dropped
