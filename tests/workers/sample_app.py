"""A user's worker module, run as a real process by the shutdown tests.

    python -m workers tests.workers.sample_app:build


The service name comes from BATON_TEST_SERVICE so each test gets its own queue.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pydantic import BaseModel

from workers import TaskContext, Worker


class Nap(BaseModel):
    seconds: float


def build() -> Worker:
    worker = Worker(os.environ["BATON_TEST_SERVICE"], concurrency=2)

    @worker.handler("nap")
    async def nap(payload: Nap, ctx: TaskContext) -> dict[str, Any]:
        await ctx.progress(10, "dozing off")
        await asyncio.sleep(payload.seconds)
        return {"slept": payload.seconds}

    return worker
