"""The execution's job progress, aggregated from its steps: finished steps in full, running ones by
their own reports; and the engine sends it with every step event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.store.event_rules import recorded_fields
from orchestrator.workflows.actions import Emit
from orchestrator.workflows.advance import new_execution, on_step_finished, on_step_progress, start
from orchestrator.workflows.definition import WorkflowDefinition, plan_workflow
from orchestrator.workflows.engine import _event_data
from orchestrator.workflows.job_progress import execution_progress
from orchestrator.workflows.outcomes import StepSucceeded
from orchestrator.workflows.state import ExecutionState
from protocol.events import EventType, Progress, TaskEvent

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def fan_out() -> ExecutionState:
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
    return start(state, T0)[0]


def test_finished_steps_count_in_full_and_running_ones_by_their_reports() -> None:
    state = fan_out()
    assert execution_progress(state).percentage == 0.0
    state = on_step_finished(state, "split", 1, StepSucceeded({}), T0 + timedelta(seconds=1))[0]
    state = on_step_progress(state, "left", 1, Progress(percentage=50), T0 + timedelta(seconds=2))[0]
    progress = execution_progress(state)
    assert progress.percentage == 37.5  # (1 + 0.5 + 0) of 4
    assert progress.current_task == "left, right"
    assert progress.custom_data == {"completed_steps": 1, "total_steps": 4, "running_steps": ["left", "right"]}


def test_step_events_carry_it_and_the_job_takes_it_over_the_steps_own() -> None:
    state = fan_out()
    state = on_step_finished(state, "split", 1, StepSucceeded({}), T0 + timedelta(seconds=1))[0]
    step_report = {"step": "left", "progress": {"percentage": 80.0, "message": "left's own"}}
    data = _event_data(Emit(EventType.STEP_PROGRESS, step_report), state)
    assert data["progress"] == step_report["progress"]  # DESIGN: step_progress {step, progress} stays the step's
    assert data["execution_progress"]["percentage"] == 25.0
    event = TaskEvent(
        event=EventType.STEP_PROGRESS,
        service="workflows",
        task_id="e1",
        global_task_id="e1",
        tenant_id="t1",
        seq=5,
        data=data,
    )
    progress, _, _ = recorded_fields(event, "running")
    assert '"percentage":25.0' in progress and "left's own" not in progress
    assert "execution_progress" not in _event_data(Emit(EventType.WORKFLOW_STARTED, {}), state)
