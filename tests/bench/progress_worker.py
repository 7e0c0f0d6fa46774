"""A worker whose handler reports progress `steps` times and returns: events for the browser watch benchmark."""

from pydantic import BaseModel

from workers import TaskContext, Worker

worker = Worker("bench-progress", concurrency=64)


class ProgressIn(BaseModel):
    steps: int = 3


@worker.handler("bench_progress")
async def report(payload: ProgressIn, ctx: TaskContext) -> dict[str, int]:
    for step in range(1, payload.steps + 1):
        await ctx.progress(100 * step / payload.steps, f"step {step}")
    return {"steps": payload.steps}
