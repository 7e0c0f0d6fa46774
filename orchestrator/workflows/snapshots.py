"""The execution's status view a WebSocket snapshot of a workflow job carries (DESIGN: a late
subscriber gets the execution's snapshot first).

The WebSocket route reads the job record first and asks for this second. An execution's state is
stored before the events of the transition are applied to its job, so the view read second is never
older than the record's seq: the events after that seq may restate what the view shows already, but
nothing the client is told about is missing from both.
"""

from __future__ import annotations

from typing import Any, Protocol

from orchestrator.models import JobRecord
from orchestrator.workflows.state import ExecutionState
from orchestrator.workflows.status import status_view
from protocol.services import WORKFLOW_SERVICE


class ExecutionReader(Protocol):
    async def load(self, tenant_id: str, execution_id: str) -> ExecutionState | None: ...


class ExecutionSnapshots:
    def __init__(self, executions: ExecutionReader) -> None:
        self._executions = executions

    async def extras(self, tenant_id: str, job: JobRecord) -> dict[str, Any] | None:
        """{"execution": the status view as `GET /executions/{id}/status` shows it} when the job is an
        execution (a `workflow` job, or a job of a type a declared workflow serves); None for any other job."""
        if job.service != WORKFLOW_SERVICE:
            return None
        state = await self._executions.load(tenant_id, job.job_id)
        return None if state is None else {"execution": status_view(state).model_dump(mode="json")}
