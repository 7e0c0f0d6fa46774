"""A user-style worker whose handler does nothing: the benchmarks measure Baton, not the work.

BATON_BENCH_TRACK_STARTED=0 runs it without the running event (`track_started=False`).
"""

import os

from pydantic import BaseModel

from workers import TaskContext, Worker

worker = Worker("bench-noop", concurrency=64, track_started=os.environ.get("BATON_BENCH_TRACK_STARTED", "1") != "0")


class NoopIn(BaseModel):
    n: int = 0


@worker.handler("bench_noop")
async def noop(payload: NoopIn, ctx: TaskContext) -> dict[str, int]:
    return {"n": payload.n}
