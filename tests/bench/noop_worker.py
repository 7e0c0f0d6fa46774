"""A user-style worker whose handler does nothing: the benchmarks measure Baton, not the work.

Configured like the benchmark's Celery peer, whose default `task_track_started=False` sends nothing as
a task starts: no running event (BATON_BENCH_TRACK_STARTED=1 sends it), and the outcomes of one loop
turn share a message (`batch_outcomes`; BATON_BENCH_BATCH_OUTCOMES=0 sends one message per outcome).
"""

import os

from pydantic import BaseModel

from workers import TaskContext, Worker

worker = Worker(
    "bench-noop",
    concurrency=64,
    track_started=os.environ.get("BATON_BENCH_TRACK_STARTED", "0") == "1",
    batch_outcomes=os.environ.get("BATON_BENCH_BATCH_OUTCOMES", "1") == "1",
)


class NoopIn(BaseModel):
    n: int = 0


@worker.handler("bench_noop")
async def noop(payload: NoopIn, ctx: TaskContext) -> dict[str, int]:
    return {"n": payload.n}
