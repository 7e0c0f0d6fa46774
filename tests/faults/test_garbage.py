"""Garbage mixed into a service queue: each piece parked with a reason, the worker keeps serving."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any

import aio_pika
import msgpack
import pytest
import redis.asyncio as aioredis

from protocol import CodecSet, TaskEnvelope, TaskEvent
from protocol.topology import EVENTS_EXCHANGE, REASON_HEADER, TASKS_EXCHANGE, dead_letter_queue, task_queue
from tests.e2e.harness import BatonSystem, new_tenants
from tests.faults.common import WORKER_TARGET, drop_probe, report, reset_fault_queues
from tests.faults.fault_worker import SERVICE

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240)]

VALID = 1000
GARBAGE = 100


def garbage(i: int, tenant: str) -> tuple[bytes, str | None]:
    kind = i % 6
    if kind == 5:
        return b"[" * 100_000 + b"]" * 100_000, "application/json"  # past the JSON parser's recursion limit
    if kind == 0:
        return bytes(random.Random(i).getrandbits(8) for _ in range(64)) + b"\xc1", "application/msgpack"
    if kind == 1:
        return msgpack.packb({"tenant_id": tenant, "type": "fault_sleep", "nonsense": i}), "application/msgpack"
    if kind == 2:
        return b"x" * (5 * 1024 * 1024), "application/msgpack"  # over the 4 MiB cap
    if kind == 3:
        return b"\x80\x04\x95pickle-bytes", "application/x-python-pickle"
    return json.dumps([1, 2, 3]).encode(), "application/json"


async def test_garbage_is_dead_lettered_and_no_valid_task_is_lost(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis
) -> None:
    await reset_fault_queues(rabbitmq_url)
    tenant = new_tenants(1)[0].tenant_id
    run = uuid.uuid4().hex[:8]
    codecs = CodecSet()
    system = BatonSystem(rabbitmq_url, redis_url, [])
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await connection.channel()  # publisher confirms on by default
        events = await channel.declare_queue(exclusive=True)
        await events.bind(EVENTS_EXCHANGE, routing_key=f"{tenant}.{SERVICE}.#")
        worker = system.start_worker(WORKER_TARGET)
        tasks = await channel.get_exchange(TASKS_EXCHANGE)
        messages: list[aio_pika.Message] = []
        task_ids = set()
        for i in range(VALID):
            envelope = TaskEnvelope(
                global_task_id=f"{run}-{i}",
                tenant_id=tenant,
                type="fault_sleep",
                service=SERVICE,
                payload={"run": run, "probe_url": redis_url, "sleep_ms": 0},
            )
            task_ids.add(envelope.task_id)
            messages.append(
                aio_pika.Message(
                    codecs.encode(envelope), content_type="application/msgpack", message_id=envelope.task_id
                )
            )
        for i in range(GARBAGE):
            body, content_type = garbage(i, tenant)
            messages.insert(
                random.Random(i).randrange(len(messages)), aio_pika.Message(body, content_type=content_type)
            )
        await asyncio.gather(*(tasks.publish(m, routing_key=SERVICE) for m in messages))

        completed: set[str] = set()
        async with asyncio.timeout(120):
            async with events.iterator() as stream:
                async for message in stream:
                    await message.ack()
                    event = codecs.decode(TaskEvent, message.body, message.content_type)
                    if event.event == "task_completed":
                        completed.add(event.task_id)
                    if completed >= task_ids:
                        break
        dead = await channel.declare_queue(dead_letter_queue(SERVICE), passive=True)
        reasons: dict[str, int] = {}
        parked = 0
        while (message := await dead.get(fail=False, no_ack=True)) is not None:
            parked += 1
            reason = str((message.headers or {}).get(REASON_HEADER, "<none>"))
            reasons[reason] = reasons.get(reason, 0) + 1
        work = await channel.declare_queue(task_queue(SERVICE), passive=True)
        left: dict[str, Any] = {"ready": work.declaration_result.message_count}
        report(
            "garbage",
            valid=VALID,
            garbage=GARBAGE,
            completed=len(completed & task_ids),
            lost=len(task_ids - completed),
            dead_lettered=parked,
            reasons=reasons,
            worker_restarts=0 if worker.popen.poll() is None else 1,
            left_in_queue=left["ready"],
        )
        assert completed >= task_ids
        assert parked == GARBAGE
        assert "<none>" not in reasons
        assert worker.popen.poll() is None, "the worker died"
    finally:
        await connection.close()
        system.close()
        await drop_probe(redis_client, run)
