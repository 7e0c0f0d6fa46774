"""What a transition tells the metrics: the execution that finished, the step attempts that ended.

Pure: the engine calls `record_transition` with the states before and after a transition it stored,
so across replicas each finish is counted once (only one replica's compare-and-set wins it).
"""

from __future__ import annotations

from typing import Protocol

from orchestrator.workflows.state import ExecutionState, StepState, StepStatus

# Step attempts that ran: skipped steps never did, and a cancelled one was stopped, not measured.
MEASURED_STEP_STATUSES = frozenset({StepStatus.COMPLETED, StepStatus.FAILED})


class WorkflowMetrics(Protocol):
    """The workflow series of `orchestrator.metrics.OrchestratorMetrics`."""

    def execution_started(self, workflow_id: str) -> None: ...

    def execution_finished(self, workflow_id: str, status: str) -> None: ...

    def step_finished(self, workflow_id: str, step: str, status: str, seconds: float) -> None: ...


def ended_steps(before: ExecutionState, after: ExecutionState) -> list[StepState]:
    """The step attempts that ran and ended in this transition."""
    ended = []
    for name, step in after.steps.items():
        if step.status not in MEASURED_STEP_STATUSES or step.finished_at is None:
            continue
        previous = before.steps.get(name)
        if previous is None or (previous.status, previous.attempt, previous.finished_at) != (
            step.status,
            step.attempt,
            step.finished_at,
        ):
            ended.append(step)
    return ended


def record_transition(metrics: WorkflowMetrics, before: ExecutionState, after: ExecutionState) -> None:
    for step in ended_steps(before, after):
        began, finished = step.began_at, step.finished_at
        if began is not None and finished is not None:
            seconds = max((finished - began).total_seconds(), 0.0)
            metrics.step_finished(after.workflow_id, step.name, step.status.value, seconds)
    if after.is_finished and not before.is_finished:
        metrics.execution_finished(after.workflow_id, after.status.value)
