"""The execution's job progress, aggregated from its steps (what `GET /jobs/{execution_id}` shows).

Each step counts for an equal share: a finished one (completed, or skipped as a branch not taken) in
full, a running one by its own last reported percentage. The engine sends it with every step event as
`execution_progress`, which the registry takes for the job's progress in place of the step's own.
"""

from __future__ import annotations

from typing import Final

from orchestrator.workflows.state import ExecutionState, StepStatus
from protocol.events import Progress

EXECUTION_PROGRESS_KEY: Final[str] = "execution_progress"


def execution_progress(state: ExecutionState) -> Progress:
    steps = state.steps
    total = len(steps)
    done = sum(
        s.status is StepStatus.COMPLETED or (s.status is StepStatus.SKIPPED and s.skip_reason == "branch")
        for s in steps.values()
    )
    running = sorted(name for name, s in steps.items() if s.status is StepStatus.RUNNING)
    partial = 0.0
    for name in running:
        reported = steps[name].progress
        partial += reported.percentage / 100 if reported is not None else 0.0
    percentage = round(100 * (done + partial) / total, 1) if total else 0.0
    return Progress(
        percentage=min(100.0, percentage),
        message=f"{done}/{total} steps done",
        current_task=", ".join(running) or None,
        custom_data={"completed_steps": done, "total_steps": total, "running_steps": running},
    )
