"""The task event (protocol version 1): the message on `baton.events` and on client WebSockets."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.envelope import PROTOCOL_VERSION, TaskEnvelope, utc_now
from protocol.names import SERVICE_NAME_PATTERN, TENANT_ID_PATTERN


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


TERMINAL_STATUSES: Final[frozenset[str]] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT}
)


class EventType(StrEnum):
    TASK_STATUS_UPDATE = "task_status_update"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    TASK_CANCELLED = "task_cancelled"
    WORKFLOW_STARTED = "workflow_started"
    STEP_STARTED = "step_started"
    STEP_PROGRESS = "step_progress"
    STEP_FINISHED = "step_finished"
    WORKFLOW_COMPLETED = "workflow_completed"
    WORKFLOW_FAILED = "workflow_failed"


_OPEN: Final[frozenset[JobStatus]] = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING})
# The statuses each event type can move a task to (DESIGN's Event table); a task_status_update
# claiming "completed" would end a job without a result.
STATUSES_BY_EVENT: Final[Mapping[EventType, frozenset[JobStatus]]] = MappingProxyType(
    {
        EventType.TASK_STATUS_UPDATE: _OPEN,
        EventType.TASK_COMPLETED: frozenset({JobStatus.COMPLETED}),
        EventType.TASK_FAILED: frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT}),
        EventType.TASK_CANCELLED: frozenset({JobStatus.CANCELLED}),
        EventType.WORKFLOW_STARTED: _OPEN,
        EventType.STEP_STARTED: _OPEN,
        EventType.STEP_PROGRESS: _OPEN,
        EventType.STEP_FINISHED: _OPEN,
        EventType.WORKFLOW_COMPLETED: frozenset({JobStatus.COMPLETED}),
        EventType.WORKFLOW_FAILED: frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED}),
    }
)


class Progress(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    percentage: float = Field(ge=0, le=100)
    message: str | None = None
    current_task: str | None = None
    estimated_remaining_seconds: float | None = Field(default=None, ge=0)
    custom_data: dict[str, Any] | None = None


class TaskEvent(BaseModel):
    """A state change of one task.

    `seq` grows with every event of one task attempt as its producer emits them
    (attempt * ATTEMPT_SEQ_STRIDE + n), so a consumer can drop late or repeated ones.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: EventType
    service: str = Field(pattern=SERVICE_NAME_PATTERN)
    task_id: str = Field(min_length=1, max_length=128)
    global_task_id: str = Field(min_length=1, max_length=128)
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    timestamp: datetime = Field(default_factory=utc_now)
    seq: int = Field(ge=0)
    data: dict[str, Any] = Field(
        default_factory=dict,
        description="by event: task_status_update {status, attempt, progress?}; task_completed {result}; "
        "task_failed {error, error_type, attempts, status (failed or timed_out), traceback? (a handler's "
        "exception: its formatted traceback, the last 30 frames and at most the last 8 KiB)}; task_cancelled "
        "{status, reason}; workflow events: see DESIGN's Workflows",
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    v: Literal[1] = PROTOCOL_VERSION

    @property
    def status(self) -> JobStatus:
        """The task status this event moves to (ValueError when `data.status` names none)."""
        if self.event in (EventType.TASK_COMPLETED, EventType.WORKFLOW_COMPLETED):
            return JobStatus.COMPLETED
        if self.event is EventType.TASK_CANCELLED:
            return JobStatus.CANCELLED
        if self.event in (EventType.TASK_FAILED, EventType.WORKFLOW_FAILED):
            return JobStatus(self.data.get("status", JobStatus.FAILED))
        if self.event is EventType.STEP_FINISHED:
            # Its `status` is the step's outcome; the task (the execution) runs on to its next steps.
            return JobStatus.RUNNING
        return JobStatus(self.data.get("status", JobStatus.RUNNING))

    def checked_status(self) -> JobStatus:
        """`status`, or ValueError when it is one this event type cannot carry."""
        status = self.status
        if status not in STATUSES_BY_EVENT[self.event]:
            raise ValueError(f"a {self.event.value} event cannot move a task to {status.value}")
        return status

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


ATTEMPT_SEQ_STRIDE: Final[int] = 1_000_000


def _base(envelope: TaskEnvelope, seq: int, metadata: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "service": envelope.service,
        "task_id": envelope.task_id,
        "global_task_id": envelope.global_task_id,
        "tenant_id": envelope.tenant_id,
        "seq": seq,
        "metadata": metadata or {},
    }


def status_event(
    envelope: TaskEnvelope,
    status: JobStatus,
    seq: int,
    progress: Progress | None = None,
    metadata: dict[str, Any] | None = None,
) -> TaskEvent:
    data: dict[str, Any] = {"status": status.value, "attempt": envelope.attempt}
    if progress is not None:
        data["progress"] = progress.model_dump(exclude_none=True)
    return TaskEvent(event=EventType.TASK_STATUS_UPDATE, data=data, **_base(envelope, seq, metadata))


def completed_event(envelope: TaskEnvelope, result: Any, seq: int, metadata: dict[str, Any] | None = None) -> TaskEvent:
    return TaskEvent(event=EventType.TASK_COMPLETED, data={"result": result}, **_base(envelope, seq, metadata))


def failed_event(
    envelope: TaskEnvelope,
    *,
    error: str,
    error_type: str,
    seq: int,
    status: Literal[JobStatus.FAILED, JobStatus.TIMED_OUT] = JobStatus.FAILED,
    metadata: dict[str, Any] | None = None,
    traceback: str | None = None,
) -> TaskEvent:
    data = {"error": error, "error_type": error_type, "attempts": envelope.attempt, "status": status.value}
    if traceback is not None:
        data["traceback"] = traceback
    return TaskEvent(event=EventType.TASK_FAILED, data=data, **_base(envelope, seq, metadata))


def cancelled_event(envelope: TaskEnvelope, reason: str, seq: int, metadata: dict[str, Any] | None = None) -> TaskEvent:
    data = {"status": JobStatus.CANCELLED.value, "reason": reason}
    return TaskEvent(event=EventType.TASK_CANCELLED, data=data, **_base(envelope, seq, metadata))
