"""Cancelling an execution's job (POST /jobs/{id}/cancel, the WebSocket's cancel_job) through the engine.

The job service only knows jobs; cancelling an execution's job (service `workflows`: a `workflow` job,
or a job of a type a declared workflow serves) in the registry alone would leave the engine running
its steps. The job service is given this as its `cancel_workflow`.
"""

from __future__ import annotations

from typing import Protocol

from orchestrator.models import CancelResult, CancelStatus, JobRecord
from orchestrator.workflows.engine import ExecutionNotFound, NotAllowed
from orchestrator.workflows.state import ExecutionState
from protocol.events import JobStatus


class Canceller(Protocol):
    async def cancel(self, tenant_id: str, execution_id: str) -> ExecutionState: ...


class JobReader(Protocol):
    async def get(self, tenant_id: str, job_id: str) -> JobRecord | None: ...


class ExecutionJobCancel:
    def __init__(self, engine: Canceller, jobs: JobReader) -> None:
        self._engine = engine
        self._jobs = jobs

    async def __call__(self, tenant_id: str, execution_id: str) -> CancelResult:
        """CANCELLED, ALREADY_TERMINAL (the execution had ended), or NOT_FOUND when no execution is kept
        (its state expired before its job): the caller then cancels the job as any other."""
        try:
            state = await self._engine.cancel(tenant_id, execution_id)
        except ExecutionNotFound:
            return CancelResult(CancelStatus.NOT_FOUND, None)
        except NotAllowed:
            return CancelResult(CancelStatus.ALREADY_TERMINAL, await self._jobs.get(tenant_id, execution_id))
        record = await self._jobs.get(tenant_id, execution_id)
        if record is not None and record.status != state.status.value:
            # The engine's cancelled event may still be owed (another replica performing): the
            # execution is cancelled already, and its job follows.
            record = record.model_copy(update={"status": JobStatus.CANCELLED.value})
        return CancelResult(CancelStatus.CANCELLED, record)
