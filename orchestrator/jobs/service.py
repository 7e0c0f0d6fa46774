"""Creating, waiting for and cancelling jobs: the logic behind the HTTP routes and the WebSocket cancel.

A job is recorded in the registry BEFORE its envelope is published, so no event of it can
arrive for an unknown job. When the broker certainly did not take the envelope (refused, or
never sent) the record is discarded again and the caller gets the `BrokerError` to answer 503
with. When it may have taken it (no confirm in time, a link broken mid-publish) the record and
its idempotency key are kept, so the task is tracked if it runs and a retry with the same key
finds this job instead of running the work twice; the caller gets `PublishUncertain` naming
the job, and the sweeper publishes the task again if its message turns out to be lost.

A job of a type that its service declared a workflow for (`WorkflowStarter`) runs as an execution of
that workflow instead of as one task: the engine records the job (under the job's id and type) in the
same stored step that starts the execution, so it is never left recorded and unstarted.

A job that uses the result cache (`JobCache`) is answered from it when an identical one completed
within the TTL, and attaches to an identical open one, without a job or a publish. A request with an
idempotency key skips both: its key alone decides which job it gets (its result is still stored).
Workflow jobs never use the cache (`CacheUnsupported` when a request asks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from orchestrator.errors import (
    BrokerError,
    BrokerUnavailable,
    IdempotencyConflict,
    JobNotFound,
    NotRetryable,
    PublishFailed,
    PublishUncertain,
    UnknownJobType,
)
from orchestrator.jobs.canonical import canonical_digest
from orchestrator.jobs.ports import JobCounters, ServiceLookup, TaskPublisher, TaskRegistry, UpdateBus, WorkflowStarter
from orchestrator.jobs.result_cache import JobCache
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.models import (
    CacheSlot,
    CancelResult,
    CancelStatus,
    CreateStatus,
    JobParent,
    JobRecord,
)
from plumbing.log_context import bind_log_context
from protocol.control import CancelCommand
from protocol.envelope import ContextIds, TaskEnvelope, TaskMetadata, new_id, utc_now
from protocol.events import TERMINAL_STATUSES, JobStatus
from protocol.services import WORKFLOW_SERVICE

log = logging.getLogger(__name__)

# Past this many bytes a body is large enough that parsing or encoding it takes tens of ms: the
# request path yields to the loop after such a step (here and in orchestrator.http.request).
YIELD_PAST_BYTES = 256 * 1024
# How many jobs of one batch are in flight at once (registry write + publish awaiting its confirm).
# A typical batch goes in one wave: its creates share one Redis pipeline, its tasks one socket write,
# their confirms come back together. At 64 a batch of 250 trickled out one job per confirm, each in
# writes of its own (tests/bench A/B of 4 pairs: 1.23x the jobs/s, 0.78x the CPU per job).
BATCH_CONCURRENCY = 256


@dataclass(frozen=True)
class NewJob:
    """A validated job request, whatever route it came through."""

    type: str
    payload: dict[str, Any]
    priority: int
    session_id: str | None = None
    context: ContextIds = field(default_factory=ContextIds)
    timeout_ms: int | None = None
    idempotency_key: str | None = None
    # A service's job for one of its tasks (POST /jobs with its token); left out of the fingerprint: the
    # parent's idempotency keys are its own (`<task id>:<n>`).
    parent: JobParent | None = None
    cache_ttl: int | None = None  # seconds to cache the result; None: the job type's default; 0: skip the cache
    retry_of: str | None = None  # the job this one runs again (POST /jobs/{id}/retry)

    def fingerprint(self) -> str:
        """What makes two requests with one idempotency key "the same request".

        The request id is left out: it traces one HTTP call, and a client retrying the same
        request usually sends a new one.
        """
        canonical = {
            "type": self.type,
            "payload": self.payload,
            "priority": self.priority,
            "session_id": self.session_id,
            "context": self.context.model_dump(exclude={"request_id"}, exclude_none=True),
            "timeout_ms": self.timeout_ms,
        }
        return canonical_digest(canonical)


@dataclass(frozen=True)
class Submission:
    record: JobRecord  # the latest state known when the call returns
    created: bool  # False when an idempotency key found an earlier job, or the cache answered
    from_cache: bool = False  # the record is the completed job whose stored result answered
    coalesced: bool = False  # the record is an identical job that was open: this request attached to it

    @property
    def terminal(self) -> bool:
        return self.record.status in TERMINAL_STATUSES


# Cancels a workflow execution through its engine (tenant, execution id); NOT_FOUND when none is kept.
CancelWorkflow = Callable[[str, str], Awaitable[CancelResult]]
# A job's root task envelope as last published (tenant, job id), JSON; None when not kept.
StoredEnvelope = Callable[[str, str], Awaitable[dict[str, Any] | None]]
# The statuses a job can be run again from (POST /jobs/{id}/retry).
RETRYABLE_STATUSES: frozenset[str] = frozenset(
    {JobStatus.FAILED.value, JobStatus.TIMED_OUT.value, JobStatus.CANCELLED.value}
)


class JobService:
    def __init__(
        self,
        registry: TaskRegistry,
        directory: ServiceLookup,
        bus: UpdateBus,
        publisher: TaskPublisher,
        metrics: OrchestratorMetrics,
        *,
        cancel_workflow: CancelWorkflow | None = None,
        workflows: WorkflowStarter | None = None,
        cache: JobCache | None = None,
        stored_envelope: StoredEnvelope | None = None,
        stats: JobCounters | None = None,
    ) -> None:
        self._stats = stats
        self._stored_envelope = stored_envelope
        self._registry = registry
        self._directory = directory
        self._bus = bus
        self._publisher = publisher
        self._metrics = metrics
        self._cancel_workflow = cancel_workflow
        self._workflows = workflows
        self._cache = cache

    async def submit(self, tenant_id: str, job: NewJob, *, request_id: str, wait: float | None = None) -> Submission:
        """Create (or find by idempotency key, or in the result cache) a job; with `wait`, hold on until
        it ends or `wait` passes."""
        service = await self._service_for(job.type)
        # A hit or an open identical job is found by the registry's create, in the same round trip.
        slot = None if self._cache is None else await self._cache.slot_for(job.type, job.payload, job.cache_ttl)
        job_id = new_id()
        bind_log_context(tenant_id=tenant_id, job_id=job_id)  # for the rest of this request (or batch item)
        if not wait:
            return await self._start(tenant_id, job_id, service, job, request_id, slot)
        # Watch before creating, so an outcome that comes before we start waiting is not missed (a
        # workflow job's terminal event goes through the bus like a task's).
        with self._bus.watch(tenant_id, job_id) as watch:
            submission = await self._start(tenant_id, job_id, service, job, request_id, slot)
            if submission.created:
                await watch.terminal(wait)
                return Submission(await self._reload(submission.record), created=True)
        if submission.terminal:
            return submission
        # An earlier job (idempotency key, or an identical open one this request attached to): wait for it.
        return replace(submission, record=await self.wait_for(tenant_id, submission.record.job_id, wait))

    async def submit_many(
        self, tenant_id: str, jobs: Sequence[NewJob], *, request_id: str
    ) -> list[Submission | Exception]:
        """Each job independently, many at once, so their publish confirms overlap."""
        if not self._publisher.connected:
            # Refuse the whole batch at once rather than create and discard every job.
            raise BrokerUnavailable("no connection to RabbitMQ")
        limit = asyncio.Semaphore(BATCH_CONCURRENCY)

        async def one(job: NewJob) -> Submission:
            async with limit:
                return await self.submit(tenant_id, job, request_id=request_id)

        results = await asyncio.gather(*(one(job) for job in jobs), return_exceptions=True)
        out: list[Submission | Exception] = []
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
            out.append(result)
        return out

    async def get(self, tenant_id: str, job_id: str) -> JobRecord:
        record = await self._registry.get(tenant_id, job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    async def get_with_payload(self, tenant_id: str, job_id: str) -> tuple[JobRecord, dict[str, Any] | None]:
        """The record and the job's payload, read together from its stored envelope; None when that is
        not kept (a workflow execution's job has none). JobNotFound."""
        record = await self._registry.get_with_envelope(tenant_id, job_id)
        if record is None:
            raise JobNotFound(job_id)
        payload = (record.envelope or {}).get("payload")
        return record.model_copy(update={"envelope": None}), payload if isinstance(payload, dict) else None

    async def list_jobs(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        type: str | None = None,
        session_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[JobRecord], int]:
        return await self._registry.list_jobs(
            tenant_id,
            status=status,
            type=type,
            session_id=session_id,
            created_after=created_after,
            created_before=created_before,
            offset=offset,
            limit=limit,
        )

    async def rerun_of(self, tenant_id: str, job_id: str) -> NewJob:
        """The new job that runs a job that ended failed, timed out or cancelled again: its type, payload,
        priority, session, context and timeout, never answered from the result cache (a retry is asked
        for because it must run); `submit` makes it, through the same path as POST /jobs. JobNotFound,
        or NotRetryable (a workflow execution's job, or one that did not end so)."""
        record = await self.get(tenant_id, job_id)
        if record.service == WORKFLOW_SERVICE:
            raise NotRetryable(job_id, record.status, execution=True)
        if record.status not in RETRYABLE_STATUSES:
            raise NotRetryable(job_id, record.status)
        stored = await self._stored_envelope(tenant_id, job_id) if self._stored_envelope is not None else None
        if stored is None:
            raise NotRetryable(job_id, record.status)  # a record without its envelope: nothing to run again
        envelope = TaskEnvelope.model_validate(stored)
        return NewJob(
            type=record.type,
            payload=envelope.payload,
            priority=envelope.priority,
            session_id=envelope.session_id,
            # The original call's request id traced that call; this one gets the retry's.
            context=envelope.context.model_copy(update={"request_id": None}),
            timeout_ms=envelope.metadata.timeout_ms,
            cache_ttl=0,
            retry_of=job_id,
        )

    async def wait_for(self, tenant_id: str, job_id: str, seconds: float) -> JobRecord:
        """The job once terminal, or its state when `seconds` run out."""
        with self._bus.watch(tenant_id, job_id) as watch:
            record = await self.get(tenant_id, job_id)
            if record.status not in TERMINAL_STATUSES and await watch.terminal(seconds) is not None:
                record = await self.get(tenant_id, job_id)
        return record

    async def cancel(self, tenant_id: str, job_id: str, reason: str = "cancelled by client") -> CancelResult:
        """Cancel a queued or running job.

        The registry decides atomically between this cancel and a racing outcome event: exactly one
        wins, and the result says which (ALREADY_TERMINAL carries the record with the real status).
        A workflow execution's job is cancelled by its engine, which stops its steps and ends the job.
        """
        if self._cancel_workflow is not None:
            record = await self._registry.get(tenant_id, job_id)
            # Any job whose root is a workflow execution: `workflow`, or a job type a declared workflow serves.
            if record is not None and record.service == WORKFLOW_SERVICE:
                outcome = await self._cancel_workflow(tenant_id, job_id)
                if outcome.status is not CancelStatus.NOT_FOUND:
                    return outcome
        result, update = await self._registry.cancel(tenant_id, job_id, reason)
        if result.status is not CancelStatus.CANCELLED:
            return result
        if result.record is not None:
            record = result.record
            self._metrics.job_finished(record.type, JobStatus.CANCELLED.value, record.created_at)
            if self._stats is not None:
                self._stats.job_finished(tenant_id, record.service, JobStatus.CANCELLED.value, record.created_at)
        # The registry already says cancelled (terminal) and the job's cancelled ledger key is set
        # with it, so late events are dropped and a queued task is never started, whatever happens
        # next; the broadcast stops work that is running right now.
        try:
            command = CancelCommand(tenant_id=tenant_id, global_task_id=job_id, reason=reason)
            await self._publisher.publish_cancel(command)
        except BrokerError as exc:
            self._metrics.publish_failures.labels(reason="cancel").inc()
            log.warning("job %s cancelled but the cancel broadcast failed: %s", job_id, exc)
        if update is not None:
            self._bus.announce(update)  # not awaited: the answer does not depend on it; the bus logs a failure
        return result

    async def _service_for(self, job_type: str) -> str:
        service = await self._directory.service_for(job_type)
        if service is None:
            raise UnknownJobType(job_type, await self._directory.known_job_types())
        return service

    async def _start(
        self, tenant_id: str, job_id: str, service: str, job: NewJob, request_id: str, slot: CacheSlot | None
    ) -> Submission:
        """The job as the workflow its service declared for its type, if any; else as one task."""
        envelope = build_envelope(tenant_id, job_id, service, job, request_id)
        # Before anything is stored or started: no job left unsendable. A workflow job is refused the same
        # way (a payload the wire cannot carry, or over the message cap, would fail its first step later).
        body = self._publisher.encode_task(envelope)
        if len(body) > YIELD_PAST_BYTES:
            await asyncio.sleep(0)  # encoding and recording a large payload are each tens of ms: not in one go
        if self._workflows is not None:
            started = await self._workflows.start(tenant_id, job_id, service, job, request_id)
            if started is not None:
                record, created = started
                if created:
                    self._count_created(tenant_id, record.service, job.type)
                return Submission(record, created=created)
        return await self._create(job, envelope, body, slot)

    async def _create(self, job: NewJob, envelope: TaskEnvelope, body: bytes, slot: CacheSlot | None) -> Submission:
        tenant_id, job_id = envelope.tenant_id, envelope.global_task_id
        record = record_for(envelope, retry_of=job.retry_of)
        key = job.idempotency_key
        fingerprint = job.fingerprint() if key else None
        created = await self._registry.create(record, idempotency_key=key, fingerprint=fingerprint, cache=slot)
        if created.status is CreateStatus.CONFLICT:
            raise IdempotencyConflict(key or "", created.record.job_id)
        if created.status is CreateStatus.EXISTING:
            return Submission(created.record, created=False)
        if created.status is CreateStatus.COALESCED:
            self._metrics.cache_coalesced.labels(type=job.type).inc()
            return Submission(created.record, created=False, coalesced=True)
        if created.status is CreateStatus.CACHED:
            self._metrics.cache_hits.labels(type=job.type).inc()
            return Submission(created.record, created=False, from_cache=True)
        if slot is not None:
            self._metrics.cache_misses.labels(type=job.type).inc()
        try:
            await self._publisher.publish_task(envelope, body=body)
        except BrokerError as exc:
            reason = exc.reason if isinstance(exc, PublishFailed) else "broker_unavailable"
            self._metrics.publish_failures.labels(reason=reason).inc()
            if not exc.maybe_sent:
                await self._registry.discard(tenant_id, job_id)
                raise
            log.warning("job %s kept: its task may have been queued (%s)", job_id, exc)
            self._count_created(tenant_id, envelope.service, job.type)
            self._bus.announce(created.created_update())
            raise PublishUncertain(job_id, exc) from exc
        self._count_created(tenant_id, envelope.service, job.type)
        # Tells WebSocket clients subscribed to all of the tenant's jobs that this one exists; not
        # awaited, the answer does not depend on it (the bus logs a failed PUBLISH).
        self._bus.announce(created.created_update())
        return Submission(created.record, created=True)

    def _count_created(self, tenant_id: str, service: str, job_type: str) -> None:
        self._metrics.jobs_created.labels(type=job_type).inc()
        if self._stats is not None:
            self._stats.job_created(tenant_id, service)

    async def _reload(self, record: JobRecord) -> JobRecord:
        return await self._registry.get(record.tenant_id, record.job_id) or record


def job_context(job: NewJob, request_id: str) -> ContextIds:
    """The ids the job's tasks carry: the request's, with the HTTP call's request id unless it gave one."""
    return job.context if job.context.request_id else job.context.model_copy(update={"request_id": request_id})


def build_envelope(tenant_id: str, job_id: str, service: str, job: NewJob, request_id: str) -> TaskEnvelope:
    context = job_context(job, request_id)
    now = utc_now()
    return TaskEnvelope(
        global_task_id=job_id,
        tenant_id=tenant_id,
        session_id=job.session_id,
        type=job.type,
        service=service,
        priority=job.priority,
        created_at=now,
        deadline=TaskEnvelope.deadline_for(job.timeout_ms, now),
        context=context,
        metadata=TaskMetadata.model_validate(
            {"source": "api", "user_id": context.user_id, "timeout_ms": job.timeout_ms}
            | (job.parent.metadata() if job.parent else {})
        ),
        payload=job.payload,
    )


def record_for(envelope: TaskEnvelope, *, retry_of: str | None = None) -> JobRecord:
    created_at = envelope.created_at.isoformat()
    return JobRecord(
        global_task_id=envelope.global_task_id,
        tenant_id=envelope.tenant_id,
        session_id=envelope.session_id,
        type=envelope.type,
        service=envelope.service,
        root_task_id=envelope.task_id,
        priority=envelope.priority,
        status=JobStatus.QUEUED.value,
        created_at=created_at,
        updated_at=created_at,
        seq=1,
        context=envelope.context.model_dump(exclude_none=True),
        attempt=envelope.attempt,
        parent=JobParent.of(envelope.metadata),
        retry_of=retry_of,
        envelope=envelope.model_dump(mode="json"),
    )
