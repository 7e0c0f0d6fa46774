"""DeclaredWorkflowJobs without Redis: which jobs run as a declared workflow, what the execution is given,
and idempotency keys, over in-memory seams."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.errors import CacheUnsupported, IdempotencyConflict
from orchestrator.jobs.service import NewJob
from orchestrator.models import JobRecord
from orchestrator.workflows import advance
from orchestrator.workflows.definition import WorkflowDefinition, plan_workflow
from orchestrator.workflows.job_starter import IDEMPOTENCY_PREFIX, DeclaredWorkflowJobs
from orchestrator.workflows.state import ExecutionState
from orchestrator.workflows.storage import StoredDefinition
from protocol.envelope import ContextIds
from protocol.services import WORKFLOW_SERVICE

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
DEFINITION = WorkflowDefinition.model_validate(
    {"name": "docs", "steps": [{"name": "split", "type": "doc_request"}], "output": "$steps.split.result"}
)


class Declared:
    def __init__(self, declared_by: str | None = "docs") -> None:
        self.declared_by = declared_by
        self.reads = 0

    async def get(self, workflow_id: str) -> StoredDefinition | None:
        self.reads += 1
        if workflow_id != "doc_request":
            return None
        return StoredDefinition(workflow_id, DEFINITION, "c", "u", declared_by=self.declared_by)


class Engine:
    """Keeps executions by id and by idempotency key, as the ExecutionStore does."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.by_key: dict[str, ExecutionState] = {}

    async def execute_definition(
        self,
        tenant_id: str,
        workflow_id: str,
        definition: WorkflowDefinition,
        data: Mapping[str, Any],
        **options: Any,
    ) -> tuple[ExecutionState, bool]:
        self.calls.append({"tenant_id": tenant_id, "workflow_id": workflow_id, "data": data, **options})
        key = options.get("idempotency_key")
        if key is not None and key in self.by_key:
            return self.by_key[key], False
        metadata = {**(options.get("metadata") or {}), "job_type": options["job_type"]}
        metadata["context"] = options["context"]
        if options["session_id"] is not None:
            metadata["session_id"] = options["session_id"]
        state = advance.new_execution(
            plan_workflow(definition),
            execution_id=options["execution_id"],
            workflow_id=workflow_id,
            tenant_id=tenant_id,
            input=data,
            now=T0,
            priority=options["priority"],
            metadata=metadata,
        )
        if key is not None:
            self.by_key[key] = state
        return state, True


class Jobs:
    async def get(self, tenant_id: str, job_id: str) -> JobRecord | None:
        return None  # the job's record still owed: the starter answers with it as it will be


def doc(**fields: Any) -> NewJob:
    return NewJob(type="doc_request", payload={"text": "t"}, priority=7, **fields)


async def test_a_job_of_a_type_its_service_declared_starts_that_workflow_as_the_job() -> None:
    engine = Engine()
    starter = DeclaredWorkflowJobs(Declared(), engine, Jobs())
    job = doc(session_id="s-1", context=ContextIds(user_id="u-1"))
    started = await starter.start("t1", "job-1", "docs", job, "req-1")
    assert started is not None
    record, created = started
    assert created
    assert (record.job_id, record.type, record.service, record.root_task_id) == (
        "job-1",
        "doc_request",
        WORKFLOW_SERVICE,
        "job-1",
    )
    assert (record.status, record.priority, record.session_id) == ("queued", 7, "s-1")
    assert record.context == {"user_id": "u-1", "request_id": "req-1", "workflow_id": "doc_request"}
    [call] = engine.calls
    assert (call["execution_id"], call["job_type"], call["data"], call["idempotency_key"]) == (
        "job-1",
        "doc_request",
        {"text": "t"},
        None,
    )


@pytest.mark.parametrize(("declared_by", "job_type"), [("docs", "other_request"), ("another-service", "doc_request")])
async def test_no_workflow_or_one_another_service_declared_leaves_the_job_a_task(
    declared_by: str, job_type: str
) -> None:
    engine = Engine()
    starter = DeclaredWorkflowJobs(Declared(declared_by), engine, Jobs())
    job = NewJob(type=job_type, payload={}, priority=5)
    assert await starter.start("t1", "job-1", "docs", job, "r") is None
    assert engine.calls == []


async def test_the_declaration_is_read_at_most_once_a_second_per_type() -> None:
    declared, now = Declared(), [0.0]
    starter = DeclaredWorkflowJobs(declared, Engine(), Jobs(), clock=lambda: now[0])
    for job_id in ("a", "b"):
        await starter.start("t1", job_id, "docs", doc(), "r")
    assert declared.reads == 1
    now[0] = 1.5
    await starter.start("t1", "c", "docs", doc(), "r")
    assert declared.reads == 2


async def test_an_idempotency_key_finds_the_first_job_and_refuses_another_request() -> None:
    engine = Engine()
    starter = DeclaredWorkflowJobs(Declared(), engine, Jobs())
    first = await starter.start("t1", "job-1", "docs", doc(idempotency_key="k"), "r-1")
    again = await starter.start("t1", "job-2", "docs", doc(idempotency_key="k"), "r-2")  # a new request id
    assert first is not None and again is not None
    assert (again[0].job_id, again[1]) == ("job-1", False)
    assert engine.calls[0]["idempotency_key"] == IDEMPOTENCY_PREFIX + "k"  # apart from execute-async's keys
    other = NewJob(type="doc_request", payload={"text": "other"}, priority=7, idempotency_key="k")
    with pytest.raises(IdempotencyConflict) as refused:
        await starter.start("t1", "job-3", "docs", other, "r-3")
    assert refused.value.job_id == "job-1"


async def test_a_workflow_job_that_asks_for_the_result_cache_is_refused_before_anything_starts() -> None:
    engine = Engine()
    starter = DeclaredWorkflowJobs(Declared(), engine, Jobs())
    with pytest.raises(CacheUnsupported, match="runs as a workflow"):
        await starter.start("t1", "job-1", "docs", doc(cache_ttl=60), "req-1")
    assert engine.calls == []
    # Skipping it (0) or leaving it to the type's default (None) runs the workflow uncached.
    assert await starter.start("t1", "job-2", "docs", doc(cache_ttl=0), "req-2") is not None
    assert await starter.start("t1", "job-3", "docs", doc(), "req-3") is not None


class SlowDeclared(Declared):
    """A declaration read that takes a while, as a Redis round trip does under load."""

    async def get(self, workflow_id: str) -> StoredDefinition | None:
        await asyncio.sleep(0.01)
        return await super().get(workflow_id)


async def test_jobs_that_find_the_declaration_stale_together_share_one_read() -> None:
    declared = SlowDeclared()
    starter = DeclaredWorkflowJobs(declared, Engine(), Jobs())
    started = await asyncio.gather(*(starter.start("t1", f"job-{n}", "docs", doc(), "r") for n in range(20)))
    assert all(s is not None for s in started)
    assert declared.reads == 1
