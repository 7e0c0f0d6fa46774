"""A worker for the workflow tests: each step's payload says what it does (sleep, block until released, fail)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from orchestrator.app import WORKFLOWS
from orchestrator.workflows.definition import WorkflowDefinition
from orchestrator.workflows.state import ExecutionState
from protocol.envelope import utc_now
from tests.api_server import Api
from tests.polling import poll
from tests.workers.helpers import running
from workers import TaskContext, Worker
from workers.errors import PermanentError


class GatedSteps:
    def __init__(self, api: Api) -> None:
        self.runs: Counter[str] = Counter()
        self.release = asyncio.Event()
        self.worker = Worker(api.service, concurrency=8)
        self.worker.handler(api.job_type)(self.run)

    async def run(self, payload: dict[str, Any], ctx: TaskContext) -> Any:
        name = payload["name"]
        self.runs[name] += 1
        await asyncio.sleep(payload.get("sleep", 0))
        if payload.get("block"):
            await self.release.wait()
        if payload.get("fail"):
            raise PermanentError(f"{name} fails")
        return {"name": name}

    async def started(self, name: str, count: int = 1) -> None:
        await poll(lambda: asyncio.sleep(0, self.runs[name]), lambda n: n >= count, what=f"step {name} to start")


@asynccontextmanager
async def gated_steps(api: Api, rabbitmq_url: str, redis_url: str) -> AsyncIterator[GatedSteps]:
    steps = GatedSteps(api)
    async with running(steps.worker, rabbitmq_url, redis_url=redis_url):
        yield steps


async def define(api: Api, workflow_id: str, steps: list[dict[str, Any]]) -> None:
    definition = WorkflowDefinition.model_validate({"name": f"test {workflow_id}", "steps": steps})
    await api.app[WORKFLOWS].definitions.put(api.tenant_a, workflow_id, definition, utc_now())


async def finished(api: Api, execution_id: str, within: float = 20.0) -> ExecutionState:
    return await poll(
        lambda: api.app[WORKFLOWS].get(api.tenant_a, execution_id),
        lambda state: state.is_finished,
        within=within,
        what=f"execution {execution_id} to finish",
    )
