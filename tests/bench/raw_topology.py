"""The names and the AMQP shape of the raw aio-pika round trip (the limit): Baton's topology, minus Baton.

Per run: a direct exchange and a priority queue for the task envelopes, a topic exchange and a queue
bound `#` for the result events, all durable like Baton's, all deleted by `delete_topology`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import msgpack
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

MSGPACK = "application/msgpack"
SERVICE = "limit"


@dataclass(frozen=True)
class RawNames:
    run: str

    @property
    def tasks_exchange(self) -> str:
        return f"bench.limit.{self.run}.tasks"

    @property
    def tasks_queue(self) -> str:
        return f"bench.limit.{self.run}.{SERVICE}"

    @property
    def events_exchange(self) -> str:
        return f"bench.limit.{self.run}.events"

    @property
    def results_queue(self) -> str:
        return f"bench.limit.{self.run}.results"


@dataclass
class RawTopology:
    tasks: AbstractExchange
    task_queue: AbstractQueue
    events: AbstractExchange
    results: AbstractQueue


async def declare_topology(channel: AbstractChannel, names: RawNames) -> RawTopology:
    tasks = await channel.declare_exchange(names.tasks_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    task_queue = await channel.declare_queue(names.tasks_queue, durable=True, arguments={"x-max-priority": 10})
    await task_queue.bind(tasks, routing_key=SERVICE)
    events = await channel.declare_exchange(names.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    results = await channel.declare_queue(names.results_queue, durable=True)
    await results.bind(events, routing_key="#")
    return RawTopology(tasks, task_queue, events, results)


async def delete_topology(channel: AbstractChannel, names: RawNames) -> None:
    for queue in (names.tasks_queue, names.results_queue):
        await channel.queue_delete(queue)
    for exchange in (names.tasks_exchange, names.events_exchange):
        await channel.exchange_delete(exchange)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def envelope(tenant_id: str, job_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The same fields as a Baton TaskEnvelope, as a plain dict."""
    task_id = str(uuid.uuid4())
    return {
        "task_id": task_id,
        "global_task_id": task_id,
        "tenant_id": tenant_id,
        "session_id": None,
        "type": job_type,
        "service": SERVICE,
        "priority": 5,
        "status": "pending",
        "created_at": now_iso(),
        "attempt": 1,
        "deadline": None,
        "context": {"agent_id": None, "conversation_id": None, "collection_id": None, "user_id": None},
        "metadata": {"source": "api", "user_id": None, "timeout_ms": None},
        "payload": payload,
        "v": 1,
    }


def task_message(body: dict[str, Any]) -> aio_pika.Message:
    return aio_pika.Message(
        msgpack.packb(body),
        content_type=MSGPACK,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=body["priority"],
        message_id=body["task_id"],
        correlation_id=body["global_task_id"],
        timestamp=time.time(),
    )


def completed_event(task: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """The same fields as a Baton task_completed TaskEvent, as a plain dict."""
    return {
        "event": "task_completed",
        "service": task["service"],
        "task_id": task["task_id"],
        "global_task_id": task["global_task_id"],
        "tenant_id": task["tenant_id"],
        "timestamp": now_iso(),
        "seq": 1_000_002,
        "data": result,
        "metadata": {},
    }


def event_routing_key(event: dict[str, Any]) -> str:
    return f"{event['tenant_id']}.{event['service']}.{event['event']}"
