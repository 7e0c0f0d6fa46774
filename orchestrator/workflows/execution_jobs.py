"""An execution's job in the GlobalTaskRegistry: created with the execution, reopened when it is retried.

The job's root task is the execution itself (task id = execution id, service `workflows`), so only the
engine's own events move the job's status; step tasks are its child tasks.
"""

from __future__ import annotations

from orchestrator.errors import RegistryError
from orchestrator.jobs.recovery import JobRecovery, ReopenStatus
from orchestrator.models import JobRecord
from orchestrator.store.registry import RedisTaskRegistry
from orchestrator.workflows.state import ExecutionState
from protocol.envelope import TaskEnvelope
from protocol.events import JobStatus
from protocol.services import WORKFLOW_JOB_TYPE, WORKFLOW_SERVICE


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


def job_record(state: ExecutionState) -> JobRecord:
    created = state.created_at.isoformat()
    return JobRecord(
        global_task_id=state.execution_id,
        tenant_id=state.tenant_id,
        session_id=state.metadata.get("session_id"),
        type=WORKFLOW_JOB_TYPE,
        service=WORKFLOW_SERVICE,
        root_task_id=state.execution_id,
        priority=state.priority,
        status=JobStatus.QUEUED.value,
        created_at=created,
        updated_at=created,
        seq=1,
        context={"workflow_id": state.workflow_id},
    )


def root_envelope(state: ExecutionState) -> TaskEnvelope:
    """The execution's root "task" as the registry's reopen wants it; it is never published."""
    return TaskEnvelope(
        task_id=state.execution_id,
        global_task_id=state.execution_id,
        tenant_id=state.tenant_id,
        type=WORKFLOW_JOB_TYPE,
        service=WORKFLOW_SERVICE,
        priority=state.priority,
        attempt=max(1, state.round - 1),
        created_at=state.created_at,
    )
