"""The worker the workflow end-to-end test runs as a real process
(`python -m workers tests.e2e.workflow_worker:build`).

Its one handler sleeps as told and appends the task it ran (with the step's attempt, the last part of
a step task id, and the runtime's delivery attempt) to a Redis list, the ledger the test reads back:
a step task that ran twice for one attempt shows up twice.
"""

from __future__ import annotations

import asyncio
import json
from typing import Final

import redis.asyncio as aioredis
from pydantic import BaseModel

from workers import TaskContext, Worker

SERVICE: Final[str] = "wfe2e"
JOB_TYPE: Final[str] = "wfe2e_step"


class StepIn(BaseModel):
    ledger: str
    redis_url: str
    sleep_ms: int = 0
    step: str = ""


def build() -> Worker:
    worker = Worker(SERVICE, concurrency=32, prefetch=32)
    clients: dict[str, aioredis.Redis] = {}

    @worker.handler(JOB_TYPE)
    async def step(payload: StepIn, ctx: TaskContext) -> dict[str, str]:
        if payload.redis_url not in clients:
            clients[payload.redis_url] = aioredis.Redis.from_url(payload.redis_url)
        await asyncio.sleep(payload.sleep_ms / 1000)
        step_attempt = ctx.task_id.rpartition(":")[2]
        entry = {"task_id": ctx.task_id, "step_attempt": step_attempt, "delivery_attempt": ctx.attempt}
        await clients[payload.redis_url].rpush(payload.ledger, json.dumps(entry))
        return {"step": payload.step}

    return worker
