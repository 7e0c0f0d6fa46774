"""`POST /jobs` of a job type that a declared workflow serves: the job runs as an execution of it.

A worker may declare a workflow under the id of a job type its own service serves (the ingestion
service's `document_processing`); a job of that type then runs as an execution of that workflow, the
job id being the execution id and the execution's job recorded under the job type (not `workflow`), so
the client sees the job it asked for, with its progress aggregated from the steps. Only a declaration
counts, and only one made by the service that serves the type: a tenant's own definition of the same
id, or another service's declaration, never takes a job type over.

The result cache does not serve these jobs (a request that asks for it is refused with CacheUnsupported):
the workflow's steps have effects of their own (the ingestion pipeline indexes the document), and the job
is recorded by the engine's step rather than by the registry's create that holds the in-flight marker.

Idempotency keys are the execution's own, kept apart from `execute-async`'s by a prefix; the request's
fingerprint is kept in the execution's metadata, so the same key with another request is refused with
IdempotencyConflict as for any job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, Unpack

from orchestrator.errors import CacheUnsupported, IdempotencyConflict
from orchestrator.jobs.service import NewJob, job_context
from orchestrator.models import JobRecord
from orchestrator.workflows.definition import WorkflowDefinition
from orchestrator.workflows.engine import RunOptions
from orchestrator.workflows.execution_jobs import job_record
from orchestrator.workflows.state import ExecutionState
from orchestrator.workflows.storage import StoredDefinition
from plumbing.single_flight import SingleFlight

IDEMPOTENCY_PREFIX: Final[str] = "jobs:"
FINGERPRINT_KEY: Final[str] = "job_fingerprint"
# Every POST /jobs asks whether its type is a declared workflow: a second-old answer saves a Redis round
# trip per job (as the directory's copy of the routes does); a new declaration is in use a second later.
LOOKUP_TTL_SECONDS: Final[float] = 1.0
# The lookups are keyed by job types the directory routes; past this many, start afresh.
MAX_CACHED_TYPES: Final[int] = 4096


class DeclaredSource(Protocol):
    """The workflows workers declared (`orchestrator.workflows.declared.DeclaredDefinitions`)."""

    async def get(self, workflow_id: str) -> StoredDefinition | None: ...


class Executor(Protocol):
    """`orchestrator.workflows.engine.WorkflowEngine`."""

    async def execute_definition(
        self,
        tenant_id: str,
        workflow_id: str,
        definition: WorkflowDefinition,
        data: Mapping[str, Any],
        **options: Unpack[RunOptions],
    ) -> tuple[ExecutionState, bool]: ...


class JobReader(Protocol):
    async def get(self, tenant_id: str, job_id: str) -> JobRecord | None: ...


class DeclaredWorkflowJobs:
    """The job service's `WorkflowStarter` (`orchestrator.jobs.ports`)."""

    def __init__(
        self,
        declared: DeclaredSource,
        engine: Executor,
        jobs: JobReader,
        *,
        lookup_ttl: float = LOOKUP_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._declared = declared
        self._engine = engine
        self._jobs = jobs
        self._ttl = lookup_ttl
        self._clock = clock
        self._found: dict[str, tuple[float, StoredDefinition | None]] = {}
        self._reading: SingleFlight[str, StoredDefinition | None] = SingleFlight()

    async def start(
        self, tenant_id: str, job_id: str, service: str, job: NewJob, request_id: str
    ) -> tuple[JobRecord, bool] | None:
        stored = await self._declared_for(job.type)
        if stored is None or stored.declared_by != service:
            return None
        if job.cache_ttl:
            raise CacheUnsupported(job.type)
        key = job.idempotency_key
        fingerprint = job.fingerprint() if key else None
        state, created = await self._engine.execute_definition(
            tenant_id,
            job.type,
            stored.definition,
            job.payload,
            priority=job.priority,
            idempotency_key=None if key is None else IDEMPOTENCY_PREFIX + key,
            session_id=job.session_id,
            execution_id=job_id,
            job_type=job.type,
            context=job_context(job, request_id).model_dump(exclude_none=True),
            metadata={FINGERPRINT_KEY: fingerprint} if fingerprint else None,
        )
        if created:
            return job_record(state), True
        if state.metadata.get(FINGERPRINT_KEY) != fingerprint:
            raise IdempotencyConflict(key or "", state.execution_id)
        # The job of the execution the key started (its record may still be owed: then as it will be).
        return await self._jobs.get(tenant_id, state.execution_id) or job_record(state), False

    async def _declared_for(self, job_type: str) -> StoredDefinition | None:
        cached = self._found.get(job_type)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        # The jobs of a batch find the copy stale together: one read serves them all.
        return await self._reading.run(job_type, lambda: self._read(job_type))

    async def _read(self, job_type: str) -> StoredDefinition | None:
        now = self._clock()
        stored = await self._declared.get(job_type)
        if len(self._found) >= MAX_CACHED_TYPES:
            self._found.clear()
        self._found[job_type] = (now + self._ttl, stored)
        return stored
