"""Two orchestrator replicas on one broker and one Redis advance the same executions: both consume the
shared events queue, so one execution's step outcomes are applied by either, and their transitions
race on the execution's version. Every execution must complete with each step run exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp.test_utils import TestServer

from orchestrator.app import WORKFLOWS, create_app
from orchestrator.settings import OrchestratorSettings
from orchestrator.workflows.definition import WorkflowDefinition
from orchestrator.workflows.state import ExecutionStatus
from protocol.envelope import utc_now
from tests.api_server import Api, quiet_sweeper
from tests.polling import poll
from tests.workers.helpers import running
from workers import TaskContext, Worker

EXECUTIONS = 30


async def test_two_replicas_advance_the_same_executions_correctly(
    api: Api, rabbitmq_url: str, redis_url: str, unique: str
) -> None:
    first = api.app[WORKFLOWS]
    second_app = create_app(
        OrchestratorSettings(rabbitmq_url=rabbitmq_url, redis_url=redis_url, api_keys={f"k2-{unique}": api.tenant_a}),
        sweeper=quiet_sweeper(f"{unique}-2", frozenset({api.tenant_a})),
    )
    second_server = TestServer(second_app)
    await second_server.start_server()
    runs: Counter[str] = Counter()

    worker = Worker(api.service, concurrency=16)

    @worker.handler(api.job_type)
    async def step(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        runs[ctx.task_id] += 1
        await asyncio.sleep(0.01)
        return {"step": payload["name"], "context": {payload["name"]: True}}

    t = api.job_type
    definition = WorkflowDefinition.model_validate(
        {
            "name": "diamond",
            "steps": [
                {"name": "a", "type": t, "payload": {"name": "a"}},
                {"name": "b", "type": t, "payload": {"name": "b"}, "after": ["a"]},
                {"name": "c", "type": t, "payload": {"name": "c"}, "after": ["a"]},
                {"name": "d", "type": t, "payload": {"name": "d"}, "after": ["a"]},
                {"name": "e", "type": t, "payload": {"name": "e"}, "after": ["b", "c", "d"]},
            ],
        }
    )
    await first.definitions.put(api.tenant_a, "diamond", definition, utc_now())
    try:
        async with running(worker, rabbitmq_url, redis_url=redis_url):
            engines = [first, second_app[WORKFLOWS]]
            started = await asyncio.gather(
                *(engines[i % 2].execute(api.tenant_a, "diamond", {"n": i}) for i in range(EXECUTIONS))
            )
            ids = [state.execution_id for state, _ in started]

            async def all_finished() -> list[Any]:
                return [await first.get(api.tenant_a, execution_id) for execution_id in ids]

            states = await poll(
                all_finished, lambda states: all(s.is_finished for s in states), within=60, what="every execution"
            )
    finally:
        await second_server.close()

    assert [s.status for s in states] == [ExecutionStatus.COMPLETED] * EXECUTIONS
    for state in states:
        assert state.context.dynamic_properties == {"n": state.input["n"], **dict.fromkeys("abcde", True)}
    assert len(runs) == EXECUTIONS * 5 and set(runs.values()) == {1}  # every step task ran once
