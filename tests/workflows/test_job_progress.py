"""The execution's job progress, aggregated from its steps: finished steps in full, running ones by
their own reports; and the engine sends it with every step event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.workflows.advance import new_execution, on_step_finished, on_step_progress, start
from orchestrator.workflows.definition import WorkflowDefinition, plan_workflow
from orchestrator.workflows.job_progress import execution_progress
from orchestrator.workflows.outcomes import StepSucceeded
from protocol.events import Progress

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def test_finished_steps_count_in_full_and_running_ones_by_their_reports() -> None:
    definition = WorkflowDefinition.model_validate(
        {
            "name": "fan-out",
            "steps": [
                {"name": "split", "type": "llm_request"},
                {"name": "left", "type": "llm_request", "after": ["split"]},
                {"name": "right", "type": "llm_request", "after": ["split"]},
                {"name": "join", "type": "llm_request", "after": ["left", "right"]},
            ],
        }
    )
    state = new_execution(
        plan_workflow(definition), execution_id="e1", workflow_id="wf", tenant_id="t1", input={}, now=T0
    )
    state = start(state, T0)[0]
    assert execution_progress(state).percentage == 0.0
    state = on_step_finished(state, "split", 1, StepSucceeded({}), T0 + timedelta(seconds=1))[0]
    state = on_step_progress(state, "left", 1, Progress(percentage=50), T0 + timedelta(seconds=2))[0]
    progress = execution_progress(state)
    assert progress.percentage == 37.5  # (1 + 0.5 + 0) of 4
    assert progress.current_task == "left, right"
    assert progress.custom_data == {"completed_steps": 1, "total_steps": 4, "running_steps": ["left", "right"]}
