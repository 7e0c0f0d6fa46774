"""An execution's job in the GlobalTaskRegistry: created with the execution, reopened when it is retried.

The job's root task is the execution itself (task id = execution id, service `workflows`), so only the
engine's own events move the job's status; step tasks are its child tasks. Its type is `workflow`, or the
job type it was submitted as (`POST /jobs` of a type a declared workflow serves), kept in the state's
metadata with the job's context ids.
"""

from __future__ import annotations

from typing import Any, Final

from orchestrator.errors import RegistryError
from orchestrator.jobs.recovery import JobRecovery, ReopenStatus
from orchestrator.models import JobRecord
from orchestrator.store.registry import RedisTaskRegistry
from orchestrator.workflows.state import ExecutionState
from protocol.envelope import TaskEnvelope
from protocol.events import JobStatus
from protocol.services import WORKFLOW_JOB_TYPE, WORKFLOW_SERVICE

# ExecutionState.metadata keys: the job type the execution's job is recorded under, and its context ids.
JOB_TYPE_KEY: Final[str] = "job_type"
CONTEXT_KEY: Final[str] = "context"


class RegistryExecutionJobs:
    def __init__(self, registry: RedisTaskRegistry, recovery: JobRecovery) -> None:
        self._registry = registry
        self._recovery = recovery

    async def create(self, state: ExecutionState) -> None:
        """Record the execution's job; one that exists already (an action performed twice) is kept."""
        await self._registry.create(job_record(state))

    async def reopen(self, state: ExecutionState) -> None:
        """Open the failed job again for the retried execution's next round of events."""
        result = await self._recovery.reopen(root_envelope(state), reason="execution retried", min_attempt=state.round)
        if result.status not in (ReopenStatus.REOPENED, ReopenStatus.REFUSED):
            raise RegistryError(f"execution {state.execution_id}: its job could not be reopened ({result.status})")
        # REFUSED: the job is open already (this action performed before): nothing to do.


def job_type(state: ExecutionState) -> str:
    found = state.metadata.get(JOB_TYPE_KEY)
    return found if isinstance(found, str) else WORKFLOW_JOB_TYPE


def job_record(state: ExecutionState) -> JobRecord:
    created = state.created_at.isoformat()
    context: dict[str, Any] = dict(state.metadata.get(CONTEXT_KEY) or {})
    return JobRecord(
        global_task_id=state.execution_id,
        tenant_id=state.tenant_id,
        session_id=state.metadata.get("session_id"),
        type=job_type(state),
        service=WORKFLOW_SERVICE,
        root_task_id=state.execution_id,
        priority=state.priority,
        status=JobStatus.QUEUED.value,
        created_at=created,
        updated_at=created,
        seq=1,
        context={**context, "workflow_id": state.workflow_id},
    )


def root_envelope(state: ExecutionState) -> TaskEnvelope:
    """The execution's root "task" as the registry's reopen wants it; it is never published."""
    return TaskEnvelope(
        task_id=state.execution_id,
        global_task_id=state.execution_id,
        tenant_id=state.tenant_id,
        type=job_type(state),
        service=WORKFLOW_SERVICE,
        priority=state.priority,
        attempt=max(1, state.round - 1),
        created_at=state.created_at,
    )
