"""The workflow engine on the real RabbitMQ and Redis, with a real worker runtime running the steps:
data passing, fan-out and join, context, retries, failure and retry of the execution, cancel, external
steps, and the execution's job following along in the registry."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator.app import LIVE, WORKFLOWS
from orchestrator.models import JobRecord
from orchestrator.workflows.definition import WorkflowDefinition
from orchestrator.workflows.engine import NotAllowed, WorkflowEngine
from orchestrator.workflows.state import ExecutionState, ExecutionStatus, StepStatus
from protocol.envelope import utc_now
from protocol.events import Progress
from tests.api_server import Api
from tests.polling import poll
from tests.workers.helpers import running
from workers import TaskContext, Worker
from workers.errors import PermanentError


def engine(api: Api) -> WorkflowEngine:
    return api.app[WORKFLOWS]


async def define(api: Api, workflow_id: str, steps: list[dict[str, Any]], **fields: Any) -> None:
    definition = WorkflowDefinition.model_validate({"name": f"test {workflow_id}", "steps": steps, **fields})
    await engine(api).definitions.put(api.tenant_a, workflow_id, definition, utc_now())


async def finished(api: Api, execution_id: str, within: float = 20.0) -> ExecutionState:
    return await poll(
        lambda: engine(api).get(api.tenant_a, execution_id),
        lambda state: state.is_finished,
        within=within,
        what=f"execution {execution_id} to finish",
    )


async def job_with_status(api: Api, execution_id: str, status: str) -> JobRecord:
    """The execution's job once it shows `status`: the engine stores a transition, then applies its events."""
    job = await poll(
        lambda: api.app[LIVE].registry.get(api.tenant_a, execution_id),
        lambda job: job is not None and job.status == status,
        what=f"the job of execution {execution_id} to be {status}",
    )
    assert job is not None
    return job


class Steps:
    """A worker serving the test's job type: each payload says what the step does."""

    def __init__(self, api: Api) -> None:
        self.runs: Counter[str] = Counter()
        self.release = asyncio.Event()
        self.worker = Worker(api.service, concurrency=8)
        self.worker.handler(api.job_type)(self.run)

    async def run(self, payload: dict[str, Any], ctx: TaskContext) -> Any:
        name = payload["name"]
        self.runs[name] += 1
        if payload.get("fail_first") and self.runs[name] == 1:
            raise RuntimeError(f"{name} fails its first run")
        if payload.get("fail_always"):
            raise PermanentError(f"{name} always fails")
        if payload.get("block"):
            await self.release.wait()
        return payload.get("returns", {"name": name, "input": payload.get("x")})


@pytest.fixture
async def steps(api: Api, rabbitmq_url: str, redis_url: str) -> AsyncIterator[Steps]:
    steps = Steps(api)
    async with running(steps.worker, rabbitmq_url, redis_url=redis_url):
        yield steps


async def test_a_dag_runs_with_data_passing_fan_out_join_and_context(api: Api, steps: Steps) -> None:
    t = api.job_type
    await define(
        api,
        "dag",
        [
            {"name": "a", "type": t, "payload": {"name": "a", "returns": {"value": 21, "context": {"seen_a": True}}}},
            {"name": "b1", "type": t, "payload": {"name": "b1", "x": "$steps.a.result.value"}},
            {"name": "b2", "type": t, "payload": {"name": "b2", "x": "$input.doc"}, "after": ["a"]},
            {
                "name": "join",
                "type": t,
                "payload": {"name": "join", "x": "$steps.b1.result.input"},
                "after": ["b1", "b2"],
            },
        ],
    )
    state, created = await engine(api).execute(api.tenant_a, "dag", {"doc": "d-1"})
    assert created and state.status is ExecutionStatus.RUNNING

    done = await finished(api, state.execution_id)
    assert done.status is ExecutionStatus.COMPLETED
    assert {name: s.status for name, s in done.steps.items()} == dict.fromkeys(done.steps, StepStatus.COMPLETED)
    assert done.steps["b1"].result == {"name": "b1", "input": 21}
    assert done.steps["b2"].result == {"name": "b2", "input": "d-1"}
    assert done.steps["join"].result == {"name": "join", "input": 21}
    assert done.context.dynamic_properties == {"doc": "d-1", "seen_a": True}
    assert steps.runs == Counter({"a": 1, "b1": 1, "b2": 1, "join": 1})

    job = await job_with_status(api, state.execution_id, "completed")
    assert job.type == "workflow"
    assert job.result == {"doc": "d-1", "seen_a": True}
    # Every attempt of every step is a task of the execution's job.
    step_tasks = {entry["task_id"] for entry in job.delegated_services} - {state.execution_id}
    assert step_tasks == {f"{state.execution_id}:{name}:1" for name in ("a", "b1", "b2", "join")}


async def test_a_failed_step_is_retried_per_its_policy(api: Api, steps: Steps) -> None:
    t = api.job_type
    await define(
        api, "retrying", [{"name": "flaky", "type": t, "payload": {"name": "flaky", "fail_first": True}, "retry": 2}]
    )
    state, _ = await engine(api).execute(api.tenant_a, "retrying", {})
    done = await finished(api, state.execution_id)
    assert done.status is ExecutionStatus.COMPLETED
    assert done.steps["flaky"].attempt == 2 and steps.runs["flaky"] == 2


async def test_a_failed_execution_stops_then_a_retry_finishes_it_keeping_done_steps(api: Api, steps: Steps) -> None:
    t = api.job_type
    await define(
        api,
        "stops",
        [
            {"name": "first", "type": t, "payload": {"name": "first"}},
            {"name": "flaky", "type": t, "payload": {"name": "flaky", "fail_first": True}},
            {"name": "last", "type": t, "payload": {"name": "last"}},
        ],
    )
    state, _ = await engine(api).execute(api.tenant_a, "stops", {})
    failed = await finished(api, state.execution_id)
    assert failed.status is ExecutionStatus.FAILED
    assert [failed.steps[n].status for n in ("first", "flaky", "last")] == [
        StepStatus.COMPLETED,
        StepStatus.FAILED,
        StepStatus.SKIPPED,
    ]
    await job_with_status(api, state.execution_id, "failed")

    await engine(api).retry(api.tenant_a, state.execution_id)
    done = await finished(api, state.execution_id)
    assert done.status is ExecutionStatus.COMPLETED
    assert steps.runs == Counter({"first": 1, "flaky": 2, "last": 1})  # the finished step was not run again
    await job_with_status(api, state.execution_id, "completed")


async def test_cancel_stops_the_running_step_and_skips_the_rest(api: Api, steps: Steps) -> None:
    t = api.job_type
    await define(
        api,
        "cancels",
        [
            {"name": "slow", "type": t, "payload": {"name": "slow", "block": True}},
            {"name": "never", "type": t, "payload": {"name": "never"}},
        ],
    )
    state, _ = await engine(api).execute(api.tenant_a, "cancels", {})
    await poll(lambda: asyncio.sleep(0, steps.runs["slow"]), lambda n: n == 1, what="the slow step to start")
    cancelled = await engine(api).cancel(api.tenant_a, state.execution_id)
    assert cancelled.status is ExecutionStatus.CANCELLED
    assert cancelled.steps["slow"].status is StepStatus.CANCELLED
    assert cancelled.steps["never"].status is StepStatus.SKIPPED
    job = await poll(
        lambda: api.app[LIVE].registry.get(api.tenant_a, state.execution_id),
        lambda job: job is not None and job.status == "cancelled",
        what="the execution's job to be cancelled",
    )
    assert job is not None
    with pytest.raises(NotAllowed):
        await engine(api).cancel(api.tenant_a, state.execution_id)
    await asyncio.sleep(0.5)
    assert steps.runs["never"] == 0


async def test_external_steps_report_progress_and_complete(api: Api) -> None:
    await define(
        api,
        "external",
        [
            {"name": "review", "type": "human_review", "kind": "external"},
            {"name": "after", "type": "human_review", "kind": "external", "payload": {"ok": "$steps.review.result.ok"}},
        ],
    )
    state, _ = await engine(api).execute(api.tenant_a, "external", {})
    progress = Progress(percentage=40, message="reading")
    reported = await engine(api).report_progress(api.tenant_a, state.execution_id, "review", progress)
    assert reported.steps["review"].progress == progress
    await engine(api).complete_step(
        api.tenant_a, state.execution_id, "review", success=True, data={"ok": True}, message=None
    )
    second = await engine(api).get(api.tenant_a, state.execution_id)
    assert second.steps["review"].status is StepStatus.COMPLETED
    assert second.steps["after"].status is StepStatus.RUNNING
    done = await engine(api).complete_step(
        api.tenant_a, state.execution_id, "after", success=False, data=None, message="rejected"
    )
    assert done.status is ExecutionStatus.FAILED and done.steps["after"].error == "rejected"


async def test_an_idempotency_key_starts_one_execution(api: Api, steps: Steps) -> None:
    await define(api, "once", [{"name": "a", "type": api.job_type, "payload": {"name": "a"}}])
    first, created = await engine(api).execute(api.tenant_a, "once", {}, idempotency_key="k-1")
    again, created_again = await engine(api).execute(api.tenant_a, "once", {}, idempotency_key="k-1")
    assert created and not created_again and again.execution_id == first.execution_id
    await finished(api, first.execution_id)
    assert steps.runs["a"] == 1


async def test_owed_actions_of_a_dead_replica_are_performed_by_recovery(api: Api, steps: Steps) -> None:
    """A transition stored but never performed (the replica died right after the write): the recovery
    loop of any replica performs it, and the step runs once."""
    await define(api, "orphan", [{"name": "a", "type": api.job_type, "payload": {"name": "a"}}])
    real_perform = engine(api).perform_owed

    async def die_before_performing(tenant_id: str, execution_id: str) -> None:
        return None

    engine(api).perform_owed = die_before_performing  # type: ignore[method-assign]
    state, _ = await engine(api).execute(api.tenant_a, "orphan", {})
    engine(api).perform_owed = real_perform  # type: ignore[method-assign]
    await asyncio.sleep(0.3)
    assert steps.runs["a"] == 0 and await api.app[LIVE].registry.get(api.tenant_a, state.execution_id) is None

    assert (api.tenant_a, state.execution_id) in await engine(api).executions.overdue(0.0)
    # The app's recovery loop (every 2 s, for actions owed over 5 s) takes it over.
    done = await finished(api, state.execution_id, within=20.0)
    assert done.status is ExecutionStatus.COMPLETED and steps.runs["a"] == 1


async def test_a_step_whose_filled_payload_cannot_be_sent_fails_instead_of_waiting(api: Api) -> None:
    """References are filled in when the step is sent: a payload that then exceeds the message cap fails
    the step for good (no retry can shrink it) rather than being retried by recovery forever."""
    await define(api, "too_big", [{"name": "a", "type": api.job_type, "payload": {"x": "$input.big"}, "retry": 3}])
    state, _ = await engine(api).execute(api.tenant_a, "too_big", {"big": "x" * (2 * 1024 * 1024)})
    done = await finished(api, state.execution_id)
    assert done.status is ExecutionStatus.FAILED
    assert done.steps["a"].error_type == "PayloadTooLarge" and done.steps["a"].attempt == 1
    assert not await engine(api).executions.owed(api.tenant_a, state.execution_id)
