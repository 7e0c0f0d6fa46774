"""Request and response bodies of the workflow routes (DESIGN "Workflows"); the status and steps bodies
are the views of `orchestrator.workflows.status`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from orchestrator.http.schemas import MAX_OFFSET, MAX_PAGE_SIZE, Priority, Text
from orchestrator.workflows.definition import OnFailure, StepDefinition
from orchestrator.workflows.state import ExecutionMode, ExecutionStatus, StepStatus
from orchestrator.workflows.status import ProgressView
from protocol.control import WORKFLOW_ID_PATTERN
from protocol.events import Progress

# As a job type: it goes into URLs and Redis hash fields; 128 as ExecutionState.workflow_id.


def _unicode_json(value: Any) -> Any:
    # A lone surrogate (\ud800) parses from JSON but has no UTF-8 form: the state could not be stored.
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate (\\ud800-\\udfff), which is not Unicode text") from None
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_unicode_json)]
JsonValue = Annotated[Any, AfterValidator(_unicode_json)]


class WorkflowView(BaseModel):
    """A stored definition as PUT stored it (absent optional step fields stay absent)."""

    workflow_id: str
    name: str
    steps: list[StepDefinition]
    on_failure: OnFailure
    output: str | None = Field(
        default=None,
        description="the reference whose value is the execution's result; absent: the final context",
    )
    created_at: datetime
    updated_at: datetime
    declared_by: str | None = Field(
        default=None,
        description="the service whose workers declared it (offered to every tenant); absent for the tenant's own",
    )


class WorkflowList(BaseModel):
    workflows: list[WorkflowView] = Field(description="sorted by workflow_id")
    total: int


class ExecuteRequest(BaseModel):
    """POST /workflows/{workflow_id}/execute-async."""

    model_config = ConfigDict(extra="forbid")

    data: JsonObject = Field(description="the execution's input: `$input.<path>` and the first dynamic_properties")
    mode: ExecutionMode = Field(
        default=ExecutionMode.AUTOMATIC, description="manual: pause before each step until /continue"
    )
    priority: Priority = None
    idempotency_key: Text | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="the same key within the execution TTL returns the same execution (200)",
    )


class LegacyExecuteRequest(ExecuteRequest):
    """POST /execute-async/ (older clients): the workflow id in the body."""

    workflow_id: str = Field(pattern=WORKFLOW_ID_PATTERN)


class ExecutionAccepted(BaseModel):
    execution_id: str
    workflow_id: str
    status: ExecutionStatus
    tracking_url: str = Field(description="/executions/{execution_id}/status")
    websocket_url: str = Field(description="/ws/{execution_id}")
    created_at: datetime


class ExecutionListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow_id: str | None = Field(default=None, pattern=WORKFLOW_ID_PATTERN)
    status: ExecutionStatus | None = None
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    limit: int = Field(default=50, ge=1, le=MAX_PAGE_SIZE)


class ExecutionSummary(BaseModel):
    execution_id: str
    workflow_id: str
    workflow_name: str
    status: ExecutionStatus
    mode: ExecutionMode
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    progress: ProgressView
    tracking_url: str


class ExecutionList(BaseModel):
    executions: list[ExecutionSummary] = Field(description="newest first")
    total: int
    offset: int
    limit: int


class StepProgressRequest(BaseModel):
    """POST /executions/{execution_id}/steps/{step}/progress: a task's Progress, from outside the runtime."""

    model_config = ConfigDict(extra="forbid")

    percentage: float = Field(ge=0, le=100, strict=True)
    message: Text | None = Field(default=None, max_length=10_000)
    current_task: Text | None = Field(default=None, max_length=10_000)
    estimated_remaining_seconds: float | None = Field(default=None, ge=0, strict=True)
    custom_data: JsonObject | None = None

    def to_progress(self) -> Progress:
        return Progress.model_validate(self.model_dump())


class StepCompleteRequest(BaseModel):
    """POST /executions/{execution_id}/steps/{step}/complete."""

    model_config = ConfigDict(extra="forbid")

    success: bool = Field(strict=True)
    data: JsonValue = Field(
        default=None,
        description="the step's result: `$steps.<step>.result`; its `context` object merges into dynamic_properties, "
        "its `next` picks a branch",
    )
    message: Text | None = Field(default=None, max_length=10_000, description="the error, when success is false")


class StepReportAnswer(BaseModel):
    """What a step report changed: the step's and the execution's status after it."""

    execution_id: str
    step: str
    step_status: StepStatus
    attempt: int
    execution_status: ExecutionStatus


class ControlNotAllowedBody(BaseModel):
    error: str
    detail: str
    execution_id: str
    status: ExecutionStatus = Field(description="the execution's status, which the control or report does not fit")
