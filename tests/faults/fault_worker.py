"""The worker the fault tests run as a real process (`python -m workers tests.faults.fault_worker:build`;
`:build_batched` is the same worker with `batch_outcomes=True`, its outcomes sharing messages).

Its handler sleeps as told and records, in the probe Redis named by the payload (the shared one,
never the instance a test kills), how often each job's handler started and finished, and when.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from pydantic import BaseModel

from workers import TaskContext, Worker

SERVICE = "faults"


class FaultIn(BaseModel):
    run: str
    probe_url: str
    sleep_ms: int = 0


def probe_keys(run: str) -> tuple[str, str, str]:
    """(starts hash, ends hash, first-start-time hash), each keyed by job id."""
    return f"faulttest:{run}:starts", f"faulttest:{run}:ends", f"faulttest:{run}:started_at"


def build() -> Worker:
    return _build(batch_outcomes=False)


def build_batched() -> Worker:
    return _build(batch_outcomes=True)


def _build(*, batch_outcomes: bool) -> Worker:
    worker = Worker(SERVICE, concurrency=16, prefetch=16, batch_outcomes=batch_outcomes)
    clients: dict[str, aioredis.Redis] = {}

    def probe(url: str) -> aioredis.Redis:
        if url not in clients:
            clients[url] = aioredis.Redis.from_url(url)
        return clients[url]

    @worker.handler("fault_sleep")
    async def fault_sleep(payload: FaultIn, ctx: TaskContext) -> dict[str, int]:
        starts, ends, started_at = probe_keys(payload.run)
        redis = probe(payload.probe_url)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(starts, ctx.global_task_id, 1)
            pipe.hsetnx(started_at, ctx.global_task_id, repr(time.time()))
            await pipe.execute()
        await asyncio.sleep(payload.sleep_ms / 1000)
        await redis.hincrby(ends, ctx.global_task_id, 1)
        return {"attempt": ctx.attempt}

    return worker
