"""A user-style worker whose handler does nothing: the benchmarks measure Baton, not the work."""

from pydantic import BaseModel

from workers import TaskContext, Worker

worker = Worker("bench-noop", concurrency=64)


class NoopIn(BaseModel):
    n: int = 0


@worker.handler("bench_noop")
async def noop(payload: NoopIn, ctx: TaskContext) -> dict[str, int]:
    return {"n": payload.n}
