"""What the CLI knows of a followed job, built from its snapshots and events: status, progress and, for a
workflow execution, each step's status and progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

TERMINAL_STATUSES: Final[frozenset[str]] = frozenset({"completed", "failed", "cancelled", "timed_out"})
# Events that may end the job. Without the event's `job_status` (servers before it) the job's record says
# whether they did: a child task's task_completed does not end its job.
_ENDING_EVENTS: Final[frozenset[str]] = frozenset(
    {"task_completed", "task_failed", "task_cancelled", "workflow_completed", "workflow_failed"}
)
_STEP_DONE: Final[frozenset[str]] = frozenset({"completed", "failed", "skipped", "cancelled", "timed_out"})


@dataclass
class StepState:
    name: str
    status: str = "pending"
    percentage: float | None = None
    message: str | None = None

    @property
    def done(self) -> bool:
        return self.status in _STEP_DONE


@dataclass
class JobState:
    job_id: str
    type: str | None = None
    root_task_id: str | None = None
    status: str | None = None
    percentage: float | None = None
    message: str | None = None
    steps: dict[str, StepState] = field(default_factory=dict)  # in the definition's order

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def step(self, name: str) -> StepState:
        return self.steps.setdefault(name, StepState(name))

    def take_steps(self, steps: list[dict[str, Any]]) -> None:
        """The steps of GET /executions/{id}/steps."""
        for entry in steps:
            step = self.step(str(entry.get("name")))
            step.status = str(entry.get("status") or step.status)
            _take_progress(step, entry.get("progress"))

    def apply(self, message: dict[str, Any]) -> bool:
        """Take a snapshot or an event; True when it may have ended the job but does not say so (then the
        job's record does: see clients.cli.live)."""
        if message.get("type") == "job_snapshot":
            self._apply_snapshot(message)
            return False
        event = str(message.get("event"))
        data = _object(message.get("data"))
        job_status = message.get("job_status")
        if isinstance(job_status, str):
            self.status = job_status
        if event == "task_status_update":
            own_task = message.get("task_id") == self.root_task_id
            if job_status is None and own_task and not self.ended and isinstance(data.get("status"), str):
                self.status = data["status"]  # a child task's status is not its job's
            _take_progress(self, data.get("progress"))
        elif event == "workflow_started" and job_status is None and not self.ended:
            self.status = "running"
        elif event.startswith("step_") and isinstance(data.get("step"), str):
            self._apply_step(event, self.step(data["step"]), data)
        return job_status is None and event in _ENDING_EVENTS

    def _apply_snapshot(self, message: dict[str, Any]) -> None:
        job = _object(message.get("job"))
        self.type = job.get("type", self.type)
        self.root_task_id = job.get("root_task_id", self.root_task_id)
        self.status = job.get("status", self.status)
        _take_progress(self, job.get("progress"))
        execution = message.get("execution")
        if isinstance(execution, dict):
            for entry in execution.get("steps_history") or []:
                step = self.step(str(entry.get("step_name")))
                step.status = str(entry.get("status") or step.status)
                _take_progress(step, entry.get("progress"))
            progress = execution.get("progress") or {}
            if isinstance(progress.get("percentage"), int | float):
                self.percentage = float(progress["percentage"])

    def _apply_step(self, event: str, step: StepState, data: dict[str, Any]) -> None:
        if event == "step_started":
            step.status = "running"
        elif event == "step_progress" and not step.done:
            step.status = "running"
            _take_progress(step, data.get("progress"))
        elif event == "step_finished":
            step.status = str(data.get("status") or "completed")
            if step.status == "completed":
                step.percentage = 100.0
        if isinstance(data.get("execution_progress"), dict):
            _take_progress(self, data["execution_progress"])
        elif self.steps:
            finished = sum(s.done for s in self.steps.values())
            self.percentage = round(100 * finished / len(self.steps), 1)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _take_progress(target: JobState | StepState, progress: Any) -> None:
    if not isinstance(progress, dict):
        return
    if isinstance(progress.get("percentage"), int | float):
        target.percentage = float(progress["percentage"])
    if isinstance(progress.get("message"), str):
        target.message = progress["message"]
