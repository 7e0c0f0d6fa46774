"""The bodies of `GET /executions/{id}/status` and `GET /executions/{id}/steps`, built from the state.

Choices where DESIGN is silent:
- `current_steps`: the steps running or waiting (manual mode), with `order` their place in the listing.
- `percentage`: the share of steps done, counting a step skipped as an untaken branch as done, so a
  completed execution shows 100; rounded to one decimal.
- `is_failed` holds for failed and timed_out, not for cancelled; `is_running` only while running.
- `steps_history`: every step that was sent or has ended, in listing order; `duration_seconds` runs
  from the worker's start (from the send when no start was reported) and is null until the step ends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from orchestrator.workflows.definition import resolve_dependencies
from orchestrator.workflows.state import ExecutionState, StepState, StepStatus


class ContextView(BaseModel):
    execution_id: str
    dynamic_properties: dict[str, Any]


class CurrentStep(BaseModel):
    name: str
    order: int


class ProgressView(BaseModel):
    total_steps: int
    completed_steps: int
    failed_steps: int
    skipped_steps: int
    percentage: float
    is_completed: bool
    is_failed: bool
    is_running: bool


class StepHistoryEntry(BaseModel):
    step_name: str
    status: StepStatus
    attempt: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    progress: dict[str, Any] | None = None
    error: str | None = None


class TrackingUrls(BaseModel):
    status: str
    steps: str
    websocket: str


class ExecutionStatusView(BaseModel):
    execution_id: str
    workflow_id: str
    workflow_name: str
    status: str
    mode: str
    created_at: datetime
    updated_at: datetime
    context: ContextView
    current_steps: list[CurrentStep]
    progress: ProgressView
    steps_history: list[StepHistoryEntry]
    tracking_urls: TrackingUrls


class StepView(BaseModel):
    name: str
    order: int
    type: str
    kind: str
    after: list[str]
    status: StepStatus
    attempt: int
    task_id: str | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    progress: dict[str, Any] | None
    result: Any
    error: str | None
    error_type: str | None
    skip_reason: str | None


class ExecutionStepsView(BaseModel):
    execution_id: str
    workflow_id: str
    status: str
    steps: list[StepView]


def tracking_urls(execution_id: str) -> TrackingUrls:
    return TrackingUrls(
        status=f"/executions/{execution_id}/status",
        steps=f"/executions/{execution_id}/steps",
        websocket=f"/ws/{execution_id}",
    )


def progress_view(state: ExecutionState) -> ProgressView:
    steps = list(state.steps.values())
    completed = sum(s.status is StepStatus.COMPLETED for s in steps)
    branch_skipped = sum(s.status is StepStatus.SKIPPED and s.skip_reason == "branch" for s in steps)
    total = len(steps)
    return ProgressView(
        total_steps=total,
        completed_steps=completed,
        failed_steps=sum(s.status is StepStatus.FAILED for s in steps),
        skipped_steps=sum(s.status is StepStatus.SKIPPED for s in steps),
        percentage=round(100 * (completed + branch_skipped) / total, 1) if total else 0.0,
        is_completed=state.status == "completed",
        is_failed=state.status in ("failed", "timed_out"),
        is_running=state.status == "running",
    )


def status_view(state: ExecutionState) -> ExecutionStatusView:
    order = {name: position for position, name in enumerate(state.steps, start=1)}
    return ExecutionStatusView(
        execution_id=state.execution_id,
        workflow_id=state.workflow_id,
        workflow_name=state.workflow_name,
        status=state.status.value,
        mode=state.mode.value,
        created_at=state.created_at,
        updated_at=state.updated_at,
        context=ContextView(execution_id=state.execution_id, dynamic_properties=state.context.dynamic_properties),
        current_steps=[
            CurrentStep(name=name, order=order[name])
            for name, step in state.steps.items()
            if step.status in (StepStatus.RUNNING, StepStatus.WAITING)
        ],
        progress=progress_view(state),
        steps_history=[_history_entry(step) for step in state.steps.values() if _has_history(step)],
        tracking_urls=tracking_urls(state.execution_id),
    )


def steps_view(state: ExecutionState) -> ExecutionStepsView:
    dependencies = resolve_dependencies(state.definition)
    return ExecutionStepsView(
        execution_id=state.execution_id,
        workflow_id=state.workflow_id,
        status=state.status.value,
        steps=[
            StepView(
                name=definition.name,
                order=position,
                type=definition.type,
                kind=definition.kind,
                after=list(dependencies[definition.name]),
                status=step.status,
                attempt=step.attempt,
                task_id=step.task_id,
                queued_at=step.queued_at,
                started_at=step.began_at,
                finished_at=step.finished_at,
                duration_seconds=step.duration_seconds,
                progress=_progress(step),
                result=step.result,
                error=step.error,
                error_type=step.error_type,
                skip_reason=step.skip_reason,
            )
            for position, definition in enumerate(state.definition.steps, start=1)
            for step in (state.steps[definition.name],)
        ],
    )


def _has_history(step: StepState) -> bool:
    return step.status not in (StepStatus.PENDING, StepStatus.WAITING)


def _history_entry(step: StepState) -> StepHistoryEntry:
    return StepHistoryEntry(
        step_name=step.name,
        status=step.status,
        attempt=step.attempt,
        started_at=step.began_at,
        finished_at=step.finished_at,
        duration_seconds=step.duration_seconds,
        progress=_progress(step),
        error=step.error,
    )


def _progress(step: StepState) -> dict[str, Any] | None:
    return None if step.progress is None else step.progress.model_dump(exclude_none=True)
