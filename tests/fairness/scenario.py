"""The noisy neighbour, run once: tenant A queues a large backlog on a service, a worker starts and
serves A alone for a while, then tenant B submits a few jobs. Each B job's queue wait (publish ->
handler start) and A's rate of starts, alone and while B's jobs run, are what comes out.

Tasks go through the orchestrator's real TaskPublisher: into each tenant's lane (`lanes=True`), or,
as before lanes, all into the service's one queue (`lanes=False`, for the before/after benchmark).
The worker is a WorkerRuntime in this process, started once A's backlog is queued, so publishing
A does not share the CPU with serving it; its handler sleeps a few ms and notes when each task started.
Everything the run made (queues, lane set, ledger keys) is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aio_pika
import redis.asyncio as aioredis

from orchestrator.broker.publisher import TaskPublisher
from orchestrator.store.lanes import RedisLanes
from protocol.codec import CodecSet
from protocol.envelope import TaskEnvelope
from protocol.lanes import lanes_key
from protocol.ledger import done_key
from protocol.topology import lane_queue, service_queues
from tests.bench.common import percentile
from workers import TaskContext, Worker
from workers.config import WorkerSettings
from workers.runtime import WorkerRuntime

PUBLISH_CONCURRENCY = 500
WARM_UP_SECONDS = 0.5  # left out of A's alone rate: the first prefetch windows filling


@dataclass(frozen=True)
class Neighbours:
    service: str
    tenant_a: str
    tenant_b: str
    backlog: int = 10_000
    small: int = 100
    concurrency: int = 10
    handler_seconds: float = 0.005
    lanes: bool = True
    alone_seconds: float = 2.5  # A served alone before B's jobs come


@dataclass(frozen=True)
class Figures:
    b_p50_s: float
    b_p95_s: float
    b_max_s: float
    a_alone_per_s: float
    a_with_b_per_s: float
    all_with_b_per_s: float
    a_publish_per_s: float

    def lines(self, label: str) -> list[str]:
        return [
            f"{label}: B's queue wait p50 {self.b_p50_s:.3f} s, p95 {self.b_p95_s:.3f} s, max {self.b_max_s:.3f} s",
            f"{label}: A's starts alone {self.a_alone_per_s:.0f}/s, while B runs {self.a_with_b_per_s:.0f}/s "
            f"(all tenants {self.all_with_b_per_s:.0f}/s); A's backlog published at {self.a_publish_per_s:.0f}/s",
        ]


@dataclass
class _Start:
    tenant: str
    at: float  # time.time() when the handler started
    waited: float


class _Starts:
    """When each task started, and an event set once every one of B's has."""

    def __init__(self, run: Neighbours) -> None:
        self.run = run
        self.all: list[_Start] = []
        self.b_started = 0
        self.all_of_b = asyncio.Event()

    def note(self, tenant: str, sent_at: float) -> None:
        now = time.time()
        self.all.append(_Start(tenant, now, now - sent_at))
        if tenant == self.run.tenant_b:
            self.b_started += 1
            if self.b_started == self.run.small:
                self.all_of_b.set()


def _worker(run: Neighbours, starts: _Starts) -> Worker:
    worker = Worker(run.service, concurrency=run.concurrency)

    @worker.handler("neighbour")
    async def handle(payload: dict[str, float], ctx: TaskContext) -> None:
        starts.note(ctx.tenant_id, payload["sent_at"])
        await asyncio.sleep(run.handler_seconds)

    return worker


def _task(run: Neighbours, tenant: str) -> TaskEnvelope:
    return TaskEnvelope(
        global_task_id=f"job-{os.urandom(8).hex()}",
        tenant_id=tenant,
        type="neighbour",
        service=run.service,
        payload={"sent_at": time.time()},
    )


async def _publish(publisher: TaskPublisher, tasks: Iterable[TaskEnvelope]) -> None:
    pending: set[asyncio.Task[None]] = set()
    for task in tasks:
        if len(pending) >= PUBLISH_CONCURRENCY:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                finished.result()
        pending.add(asyncio.create_task(publisher.publish_task(task)))
    for finished in asyncio.as_completed(pending):
        await finished


def _rate(starts: list[_Start], tenant: str | None, since: float, until: float) -> float:
    if until <= since:
        return float("nan")
    count = sum(1 for s in starts if since <= s.at < until and (tenant is None or s.tenant == tenant))
    return count / (until - since)


async def run_neighbours(rabbitmq_url: str, redis_url: str, run: Neighbours) -> Figures:
    redis = aioredis.Redis.from_url(redis_url)
    publisher = TaskPublisher(
        rabbitmq_url,
        CodecSet(),
        connection_name=f"neighbours-{run.service}",
        lanes=RedisLanes(redis) if run.lanes else None,
    )
    starts = _Starts(run)
    published: list[TaskEnvelope] = []
    runtime: WorkerRuntime | None = None
    await publisher.start()
    try:
        backlog = [_task(run, run.tenant_a) for _ in range(run.backlog)]
        published += backlog
        t0 = time.perf_counter()
        await _publish(publisher, backlog)
        a_publish_per_s = run.backlog / (time.perf_counter() - t0)

        settings = WorkerSettings(
            rabbitmq_url=rabbitmq_url, redis_url=redis_url, heartbeat_seconds=30.0, shutdown_grace_seconds=2.0
        )
        runtime = WorkerRuntime(_worker(run, starts), settings)
        await runtime.start()
        started_at = time.time()
        await asyncio.sleep(run.alone_seconds)
        b_sent_at = time.time()
        small = [_task(run, run.tenant_b) for _ in range(run.small)]  # stamped now, just before their publish
        published += small
        await _publish(publisher, small)
        await asyncio.wait_for(starts.all_of_b.wait(), 60)
        waits = [s.waited for s in starts.all if s.tenant == run.tenant_b]
        b_done_at = max(s.at for s in starts.all if s.tenant == run.tenant_b)
        return Figures(
            b_p50_s=percentile(waits, 0.5),
            b_p95_s=percentile(waits, 0.95),
            b_max_s=max(waits),
            a_alone_per_s=_rate(starts.all, run.tenant_a, started_at + WARM_UP_SECONDS, b_sent_at),
            a_with_b_per_s=_rate(starts.all, run.tenant_a, b_sent_at, b_done_at),
            all_with_b_per_s=_rate(starts.all, None, b_sent_at, b_done_at),
            a_publish_per_s=a_publish_per_s,
        )
    finally:
        await _clean_up(rabbitmq_url, redis, run, runtime, publisher, published)


async def _clean_up(
    rabbitmq_url: str,
    redis: aioredis.Redis,
    run: Neighbours,
    runtime: WorkerRuntime | None,
    publisher: TaskPublisher,
    published: list[TaskEnvelope],
) -> None:
    # The backlog's rest is purged first, so stopping the worker hands back only its prefetch.
    connection: Any = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await connection.channel()
        queues = [spec.name for spec in service_queues(run.service)]
        lanes = [lane_queue(run.service, tenant) for tenant in (run.tenant_a, run.tenant_b)] if run.lanes else []
        for name in [queues[0], *lanes]:
            purging = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.ChannelNotFoundEntity):  # a run that failed early
                await (await purging.declare_queue(name, passive=True)).purge()
        if runtime is not None:
            await runtime.stop(grace_seconds=1.0)
        for name in [*queues, *lanes]:
            await channel.queue_delete(name)
    finally:
        await connection.close()
        await publisher.close()
    pipe = redis.pipeline(transaction=False)
    pipe.delete(lanes_key(run.service))
    for task in published:
        pipe.delete(done_key(task.task_id))
    await pipe.execute()
    await redis.aclose()
