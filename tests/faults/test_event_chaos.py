"""Events duplicated, shuffled and late (progress after the end): each client sees one terminal event."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiohttp
import pytest

from protocol import (
    ATTEMPT_SEQ_STRIDE,
    CodecSet,
    JobStatus,
    Progress,
    TaskEnvelope,
    TaskEvent,
    completed_event,
    status_event,
)
from protocol.topology import EVENTS_EXCHANGE, event_routing_key
from tests.e2e.harness import BatonSystem, TerminalCollector, new_tenants
from tests.faults.common import fault_job, job_statuses, report, reset_fault_queues
from tests.faults.fault_worker import SERVICE

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240)]

JOBS = 200


def storyline(envelope: TaskEnvelope) -> list[TaskEvent]:
    base = envelope.attempt * ATTEMPT_SEQ_STRIDE
    events = [status_event(envelope, JobStatus.RUNNING, base + 1)]
    events += [
        status_event(envelope, JobStatus.RUNNING, base + 1 + n, Progress(percentage=25 * n)) for n in range(1, 4)
    ]
    events.append(completed_event(envelope, {"ok": True}, base + 5))
    events.append(status_event(envelope, JobStatus.RUNNING, base + 6, Progress(percentage=99)))  # after the end
    return events


async def test_duplicated_shuffled_and_late_events_give_one_terminal_event(rabbitmq_url: str, redis_url: str) -> None:
    await reset_fault_queues(rabbitmq_url)
    rng = random.Random(7)
    system = BatonSystem(rabbitmq_url, redis_url, new_tenants(1))
    tenant = system.tenants[0]
    codecs = CodecSet()
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        base_url = await system.start_orchestrator()
        run = uuid.uuid4().hex[:8]
        async with aiohttp.ClientSession() as session:
            # The fault service is announced by no running worker here: announce it as a worker would.
            first = await TerminalCollector.connect(session, base_url, tenant)
            second = await TerminalCollector.connect(session, base_url, tenant)
            await announce_fault_service(connection, codecs)
            jobs: list[dict[str, Any]] = []
            for _ in range(JOBS):
                async with session.post(
                    f"{base_url}/jobs", json=fault_job(run, redis_url, 0), headers=tenant.headers
                ) as response:
                    assert response.status == 202, await response.text()
                    job_id = (await response.json())["job_id"]
                async with session.get(f"{base_url}/jobs/{job_id}", headers=tenant.headers) as response:
                    jobs.append(await response.json())
            await reset_fault_queues(rabbitmq_url)  # no worker runs them: the events below are the story
            published: list[TaskEvent] = []
            for record in jobs:
                envelope = TaskEnvelope(
                    task_id=record["root_task_id"],
                    global_task_id=record["job_id"],
                    tenant_id=tenant.tenant_id,
                    type="fault_sleep",
                    service=SERVICE,
                    created_at=datetime.now(UTC),
                )
                story = storyline(envelope)
                published += story + rng.sample(story, k=3)  # three duplicates per job
            rng.shuffle(published)
            channel = await connection.channel()
            exchange = await channel.get_exchange(EVENTS_EXCHANGE)
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(codecs.encode(event), content_type="application/msgpack"),
                        routing_key=event_routing_key(event.tenant_id, event.service, event.event.value),
                    )
                    for event in published
                )
            )
            job_ids = {record["job_id"] for record in jobs}
            assert await first.wait_for(job_ids, timeout=60) == set()
            assert await second.wait_for(job_ids, timeout=60) == set()
            await asyncio.sleep(1.0)
            await first.close()
            await second.close()
            statuses = await job_statuses(session, base_url, tenant, sorted(job_ids))
        multi_terminal = 0
        backwards = 0
        for collector in (first, second):
            multi_terminal += sum(1 for events in collector.terminal.values() if len(events) != 1)
            seen: dict[str, int] = {}
            for _, message in collector.events:
                if "event" in message:
                    job = message["global_task_id"]
                    if message["seq"] <= seen.get(job, 0):
                        backwards += 1
                    seen[job] = message["seq"]
        report(
            "event_chaos",
            jobs=JOBS,
            events_published=len(published),
            clients=2,
            clients_with_other_than_one_terminal=multi_terminal,
            seq_not_growing=backwards,
            registry_not_completed=sum(1 for s in statuses.values() if s != "completed"),
        )
        assert multi_terminal == 0
        assert backwards == 0
        assert set(statuses.values()) == {"completed"}
    finally:
        await connection.close()
        system.close()
        await system.forget_lanes()  # its tenant's lanes of the services it used


async def announce_fault_service(connection: aio_pika.abc.AbstractConnection, codecs: CodecSet) -> None:
    from protocol import WorkerHeartbeat
    from protocol.topology import system_routing_key

    channel = await connection.channel()
    exchange = await channel.get_exchange(EVENTS_EXCHANGE)
    now = datetime.now(UTC)
    heartbeat = WorkerHeartbeat(
        worker_id=f"chaos-{uuid.uuid4().hex[:6]}",
        service=SERVICE,
        job_types=["fault_sleep"],
        concurrency=1,
        in_flight=0,
        hostname="test",
        pid=0,
        started_at=now,
        interval_seconds=5,
        stopping=True,  # announces the job type without counting as a live worker
    )
    await exchange.publish(
        aio_pika.Message(codecs.encode(heartbeat), content_type="application/msgpack"),
        routing_key=system_routing_key(SERVICE, "worker_heartbeat"),
    )
    await asyncio.sleep(1.5)  # the directory caches routes for a second
