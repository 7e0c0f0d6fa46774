"""JobService on the in-memory fakes alone: no Redis, no RabbitMQ, the seams of orchestrator.jobs.ports."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from orchestrator.errors import BrokerUnavailable, UnknownJobType, UnpublishableJob
from orchestrator.jobs.service import JobService, NewJob, Submission
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.models import CancelResult, CancelStatus, JobRecord
from protocol.codec import DEFAULT_MAX_MESSAGE_BYTES
from protocol.envelope import TaskEnvelope
from protocol.events import ATTEMPT_SEQ_STRIDE, EventType, JobStatus, TaskEvent
from protocol.services import WORKFLOW_SERVICE
from tests.fakes.directory import FakeServiceLookup
from tests.fakes.publisher import FakeTaskPublisher
from tests.fakes.registry import FakeTaskRegistry
from tests.fakes.update_bus import FakeUpdateBus
from tests.polling import eventually

TENANT = "t-unit"


@dataclass
class Parts:
    service: JobService
    registry: FakeTaskRegistry
    bus: FakeUpdateBus
    publisher: FakeTaskPublisher


@pytest.fixture
def parts() -> Parts:
    registry, bus, publisher = FakeTaskRegistry(), FakeUpdateBus(), FakeTaskPublisher()
    directory = FakeServiceLookup({"echo_request": "echo"})
    return Parts(JobService(registry, directory, bus, publisher, OrchestratorMetrics()), registry, bus, publisher)


def echo(**payload: object) -> NewJob:
    return NewJob(type="echo_request", payload=dict(payload), priority=5)


async def test_a_submitted_job_is_recorded_published_and_announced(parts: Parts) -> None:
    submission = await parts.service.submit(TENANT, echo(text="hi"), request_id="r-1")
    assert submission.created and submission.record.status == JobStatus.QUEUED
    job_id = submission.record.job_id

    [envelope] = parts.publisher.taken("echo")
    assert (envelope.global_task_id, envelope.tenant_id, envelope.payload) == (job_id, TENANT, {"text": "hi"})
    assert envelope.context.request_id == "r-1"
    stored = await parts.registry.get(TENANT, job_id)
    assert stored is not None and (stored.status, stored.root_task_id) == ("queued", envelope.task_id)
    [created] = parts.bus.announced
    assert (created.job_id, created.seq, created.status) == (job_id, 1, "queued")


async def test_a_repeated_idempotency_key_finds_the_first_job_and_publishes_nothing_more(parts: Parts) -> None:
    job = NewJob(type="echo_request", payload={"n": 1}, priority=5, idempotency_key="once")
    first = await parts.service.submit(TENANT, job, request_id="r-1")
    again = await parts.service.submit(TENANT, job, request_id="r-2")
    assert not again.created and again.record.job_id == first.record.job_id
    assert len(parts.publisher.taken("echo")) == 1


async def test_with_the_broker_down_the_job_is_refused_and_not_kept(parts: Parts) -> None:
    parts.publisher.connected = False
    with pytest.raises(BrokerUnavailable):
        await parts.service.submit(TENANT, echo(), request_id="r-1")
    assert await parts.registry.list_jobs(TENANT) == ([], 0)
    assert parts.bus.announced == []
    with pytest.raises(UnknownJobType):
        await parts.service.submit(TENANT, NewJob(type="nobody_serves_this", payload={}, priority=5), request_id="r")


async def test_cancelling_a_queued_job_ends_it_broadcasts_and_announces_once(parts: Parts) -> None:
    job_id = (await parts.service.submit(TENANT, echo(), request_id="r-1")).record.job_id
    result = await parts.service.cancel(TENANT, job_id)
    assert result.status is CancelStatus.CANCELLED
    stored = await parts.service.get(TENANT, job_id)
    assert stored.status == JobStatus.CANCELLED
    assert [(c.tenant_id, c.global_task_id) for c in parts.publisher.cancels] == [(TENANT, job_id)]
    assert [(u.status, u.terminal) for u in parts.bus.announced] == [("queued", False), ("cancelled", True)]

    again = await parts.service.cancel(TENANT, job_id)
    assert again.status is CancelStatus.ALREADY_TERMINAL
    assert len(parts.publisher.cancels) == 1 and len(parts.bus.announced) == 2


async def test_a_batch_publishes_its_jobs_in_one_wave_not_one_confirm_at_a_time(parts: Parts) -> None:
    # Every publish waits here until the whole batch is publishing: a batch held to fewer jobs in flight
    # than it has never gets there (its tasks would leave one confirm at a time, each in a write of its own).
    jobs = [echo(n=n) for n in range(250)]  # the benchmark's batch size
    publishing = 0
    all_publishing = asyncio.Event()
    publish = parts.publisher.publish_task

    async def publish_with_the_rest(envelope: TaskEnvelope, **kwargs: Any) -> None:
        nonlocal publishing
        publishing += 1
        if publishing == len(jobs):
            all_publishing.set()
        await all_publishing.wait()
        await publish(envelope, **kwargs)

    parts.publisher.publish_task = publish_with_the_rest  # type: ignore[method-assign]
    async with asyncio.timeout(5):
        results = await parts.service.submit_many(TENANT, jobs, request_id="r-batch")
    assert all(isinstance(r, Submission) and r.created for r in results)
    assert len(parts.publisher.taken("echo")) == len(jobs)


async def test_a_submit_that_waits_returns_the_outcome_a_worker_reports(parts: Parts) -> None:
    async def worker() -> None:
        await eventually(lambda: parts.publisher.waiting("echo") > 0)
        [envelope] = parts.publisher.taken("echo")
        event = TaskEvent(
            event=EventType.TASK_COMPLETED,
            service=envelope.service,
            task_id=envelope.task_id,
            global_task_id=envelope.global_task_id,
            tenant_id=envelope.tenant_id,
            seq=envelope.attempt * ATTEMPT_SEQ_STRIDE + 1,
            data={"result": {"echo": envelope.payload["text"]}},
        )
        update = await parts.registry.apply_event(event)
        assert update is not None
        parts.bus.announce(update)  # as the event consumer does

    running = asyncio.create_task(worker())
    submission = await parts.service.submit(TENANT, echo(text="hi"), request_id="r-1", wait=5)
    await running
    assert submission.created and submission.terminal
    assert (submission.record.status, submission.record.result) == ("completed", {"echo": "hi"})


class FakeStarter:
    """A WorkflowStarter serving `doc_request` (declared by its service `docs`): records the job as an
    execution's would be, and remembers what it was asked."""

    def __init__(self, registry: FakeTaskRegistry) -> None:
        self.registry = registry
        self.started: list[tuple[str, str, str, NewJob, str]] = []

    async def start(
        self, tenant_id: str, job_id: str, service: str, job: NewJob, request_id: str
    ) -> tuple[JobRecord, bool] | None:
        if job.type != "doc_request":
            return None
        self.started.append((tenant_id, job_id, service, job, request_id))
        record = JobRecord(
            global_task_id=job_id,
            tenant_id=tenant_id,
            type=job.type,
            service=WORKFLOW_SERVICE,
            root_task_id=job_id,
            priority=job.priority,
            status="queued",
            created_at="2026-12-03T10:00:00+00:00",
            updated_at="2026-12-03T10:00:00+00:00",
            seq=1,
        )
        await self.registry.create(record)
        return record, True


@dataclass
class WorkflowParts(Parts):
    starter: FakeStarter
    cancelled_executions: list[tuple[str, str]]


@pytest.fixture
def workflow_parts() -> WorkflowParts:
    registry, bus, publisher = FakeTaskRegistry(), FakeUpdateBus(), FakeTaskPublisher()
    directory = FakeServiceLookup({"echo_request": "echo", "doc_request": "docs"})
    starter = FakeStarter(registry)
    cancelled: list[tuple[str, str]] = []

    async def cancel_workflow(tenant_id: str, execution_id: str) -> CancelResult:
        cancelled.append((tenant_id, execution_id))
        result, _ = await registry.cancel(tenant_id, execution_id, "execution cancelled")
        return result

    service = JobService(
        registry, directory, bus, publisher, OrchestratorMetrics(), cancel_workflow=cancel_workflow, workflows=starter
    )
    return WorkflowParts(service, registry, bus, publisher, starter, cancelled)


async def test_a_job_type_a_declared_workflow_serves_starts_it_instead_of_a_task(
    workflow_parts: WorkflowParts,
) -> None:
    parts = workflow_parts
    job = NewJob(type="doc_request", payload={"text": "t"}, priority=9, session_id="s-1")
    submission = await parts.service.submit(TENANT, job, request_id="r-1")
    assert submission.created and submission.record.type == "doc_request"
    [(tenant, job_id, service, started, request_id)] = parts.starter.started
    assert (tenant, job_id, service, started, request_id) == (TENANT, submission.record.job_id, "docs", job, "r-1")
    assert parts.publisher.taken("docs") == []  # no task of its own: the workflow's steps are its tasks

    plain = await parts.service.submit(TENANT, echo(text="hi"), request_id="r-2")
    assert plain.record.service == "echo" and len(parts.publisher.taken("echo")) == 1
    assert len(parts.starter.started) == 1


async def test_a_workflow_job_too_large_for_the_wire_is_refused_before_it_starts(
    workflow_parts: WorkflowParts,
) -> None:
    parts = workflow_parts
    job = NewJob(type="doc_request", payload={"text": "x" * (DEFAULT_MAX_MESSAGE_BYTES + 1)}, priority=5)
    with pytest.raises(UnpublishableJob):
        await workflow_parts.service.submit(TENANT, job, request_id="r-1")
    assert parts.starter.started == []


async def test_cancelling_a_workflow_job_cancels_its_execution(workflow_parts: WorkflowParts) -> None:
    parts = workflow_parts
    job_id = (await parts.service.submit(TENANT, NewJob("doc_request", {}, 5), request_id="r")).record.job_id
    result = await parts.service.cancel(TENANT, job_id)
    assert result.status is CancelStatus.CANCELLED
    assert parts.cancelled_executions == [(TENANT, job_id)]
    assert parts.publisher.cancels == []  # the engine stops the steps, not a job-wide broadcast from here

    plain_id = (await parts.service.submit(TENANT, echo(), request_id="r")).record.job_id
    await parts.service.cancel(TENANT, plain_id)
    assert parts.cancelled_executions == [(TENANT, job_id)]
