"""The state of one workflow execution: what is stored, compared-and-set, and advanced.

The state carries the definition it started with, so editing or deleting the workflow never changes
an execution under way, and any replica can advance it from the state alone. `version` grows by one
with every change: storage writes a new state only over the version it read.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.workflows.definition import WorkflowDefinition
from protocol.events import Progress
from protocol.names import TENANT_ID_PATTERN
from protocol.priorities import DEFAULT_PRIORITY, MAX_PRIORITY

# 48 + ':' + a 64-character step name + ':' + the attempt stay within a task id's 128 characters.
MAX_EXECUTION_ID_CHARS: Final[int] = 48


class ExecutionStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


TERMINAL_EXECUTION_STATUSES: Final[frozenset[ExecutionStatus]] = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED, ExecutionStatus.TIMED_OUT}
)


class ExecutionMode(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class StepStatus(StrEnum):
    PENDING = "pending"
    WAITING = "waiting"  # manual mode: ready, held until the execution is continued
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


FINISHED_STEP_STATUSES: Final[frozenset[StepStatus]] = frozenset(
    {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
)

# Why a step ended skipped: its branch was not taken; a step it waits for failed (or was skipped for
# that); the execution stopped on a failure (on_failure "stop"); the execution was cancelled or timed out.
SkipReason = Literal["branch", "dependency_failed", "stopped", "cancelled"]


def step_task_id(execution_id: str, step: str, attempt: int) -> str:
    """The task id of one attempt of one step: the same every time, so a re-published attempt is
    recognised as the same task by the registry and by the worker runtime's ledger."""
    return f"{execution_id}:{step}:{attempt}"


class StepState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    status: StepStatus = StepStatus.PENDING
    # The current (or last) attempt; 0 before the first. `first_attempt` opens the current round of
    # `retry.max_attempts` attempts: a retry of the execution starts a new round.
    attempt: int = Field(default=0, ge=0)
    first_attempt: int = Field(default=1, ge=1)
    task_id: str | None = None
    queued_at: datetime | None = None  # the engine sent the attempt
    started_at: datetime | None = None  # its worker said it began (or it reported progress)
    finished_at: datetime | None = None
    result: Any = None
    next: list[str] | None = None  # the branch the step's result picked; None: every successor
    error: str | None = None
    error_type: str | None = None
    progress: Progress | None = None
    skip_reason: SkipReason | None = None

    @property
    def began_at(self) -> datetime | None:
        return self.started_at or self.queued_at

    @property
    def duration_seconds(self) -> float | None:
        began = self.began_at
        if began is None or self.finished_at is None:
            return None
        return round((self.finished_at - began).total_seconds(), 3)


class ExecutionContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dynamic_properties: dict[str, Any] = Field(default_factory=dict)


class ExecutionState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    execution_id: str = Field(min_length=1, max_length=MAX_EXECUTION_ID_CHARS)
    workflow_id: str = Field(min_length=1, max_length=128)
    workflow_name: str
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    mode: ExecutionMode = ExecutionMode.AUTOMATIC
    status: ExecutionStatus = ExecutionStatus.QUEUED
    priority: int = Field(default=DEFAULT_PRIORITY, ge=0, le=MAX_PRIORITY)
    input: dict[str, Any] = Field(default_factory=dict)
    context: ExecutionContext = Field(default_factory=ExecutionContext)
    definition: WorkflowDefinition
    steps: dict[str, StepState]  # in the definition's listing order
    error: str | None = None
    # Free room for what the caller needs again later (session id, user id, idempotency key...).
    metadata: dict[str, Any] = Field(default_factory=dict)
    version: int = Field(default=0, ge=0)
    # The engine numbers the execution's own events (seq = round * ATTEMPT_SEQ_STRIDE + events_emitted):
    # a transition performed twice after a crash re-sends the same seqs, which the registry drops.
    # `round` grows when a failed execution is retried, as a task's attempt does.
    events_emitted: int = Field(default=0, ge=0)
    round: int = Field(default=1, ge=1)
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_EXECUTION_STATUSES

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> ExecutionState:
        return cls.model_validate_json(text)
