"""A worker run as real processes by the flow limit tests: every start is recorded in Redis.

    python -m workers tests.workers.limited_app:build

BATON_TEST_SERVICE names the service and BATON_TEST_RECORD the Redis key prefix of the records;
the limits come from BATON_WORKER_RATE_LIMIT and BATON_WORKER_MAX_CONCURRENCY.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel

from workers import TaskContext, Worker


class Work(BaseModel):
    seconds: float
    first_attempt_seconds: float | None = None  # a longer first attempt: the one the kill test kills


def build() -> Worker:
    worker = Worker(os.environ["BATON_TEST_SERVICE"], concurrency=5)
    record = os.environ["BATON_TEST_RECORD"]
    redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])

    @worker.handler("work")
    async def work(payload: Work, ctx: TaskContext) -> dict[str, Any]:
        started = time.time()
        running = await redis.incr(f"{record}:running")
        pipe = redis.pipeline(transaction=False)
        pipe.rpush(f"{record}:starts", f"{started:.6f}")
        pipe.rpush(f"{record}:running_seen", running)
        pipe.rpush(f"{record}:pids", f"{ctx.task_id} {os.getpid()}")
        await pipe.execute()
        try:
            seconds = payload.first_attempt_seconds if payload.first_attempt_seconds and ctx.attempt == 1 else None
            await asyncio.sleep(seconds or payload.seconds)
        finally:
            await redis.decr(f"{record}:running")
        return {"started": started}

    return worker
