"""The status and steps bodies: DESIGN's shape, progress totals and percentages, history with durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.workflows.advance import (
    cancel,
    new_execution,
    on_step_finished,
    on_step_progress,
    on_step_started,
    start,
)
from orchestrator.workflows.definition import WorkflowDefinition, plan_workflow
from orchestrator.workflows.outcomes import StepFailed, StepSucceeded
from orchestrator.workflows.state import ExecutionMode, ExecutionState
from orchestrator.workflows.status import progress_view, status_view, steps_view
from protocol.events import Progress

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def started(*steps: dict[str, Any], mode: ExecutionMode = ExecutionMode.AUTOMATIC, **fields: Any) -> ExecutionState:
    definition = WorkflowDefinition.model_validate({"name": "Documents", "steps": list(steps), **fields})
    state = new_execution(
        plan_workflow(definition),
        execution_id="e1",
        workflow_id="wf-1",
        tenant_id="t1",
        input={"doc": "x"},
        now=T0,
        mode=mode,
    )
    return start(state, at(0))[0]


def step(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": "llm_request", **fields}


def finish(state: ExecutionState, name: str, when: float, outcome: StepSucceeded | StepFailed) -> ExecutionState:
    return on_step_finished(state, name, state.steps[name].attempt, outcome, at(when))[0]


def test_the_status_body_has_designs_shape() -> None:
    state = started(step("a"), step("b"), step("c", after=["a"]))
    state = on_step_started(state, "a", 1, at(1))[0]
    state = finish(state, "a", 101.5, StepSucceeded({"ok": True}, context={"done": True}))
    state = on_step_progress(state, "b", 1, Progress(percentage=40, message="reading"), at(102))[0]
    body = status_view(state).model_dump(mode="json")
    assert list(body) == [
        "execution_id",
        "workflow_id",
        "workflow_name",
        "status",
        "mode",
        "created_at",
        "updated_at",
        "context",
        "current_steps",
        "progress",
        "steps_history",
        "tracking_urls",
    ]
    assert body["execution_id"] == "e1" and body["workflow_name"] == "Documents"
    assert (body["status"], body["mode"]) == ("running", "automatic")
    assert body["created_at"] == "2026-12-03T10:00:00Z" and body["updated_at"] == "2026-12-03T10:01:42Z"
    assert body["context"] == {"execution_id": "e1", "dynamic_properties": {"doc": "x", "done": True}}
    assert body["current_steps"] == [{"name": "b", "order": 2}, {"name": "c", "order": 3}]
    assert body["progress"] == {
        "total_steps": 3,
        "completed_steps": 1,
        "failed_steps": 0,
        "skipped_steps": 0,
        "percentage": 33.3,
        "is_completed": False,
        "is_failed": False,
        "is_running": True,
    }
    assert body["steps_history"][0] == {
        "step_name": "a",
        "status": "completed",
        "attempt": 1,
        "started_at": "2026-12-03T10:00:01Z",
        "finished_at": "2026-12-03T10:01:41.500000Z",
        "duration_seconds": 100.5,
        "progress": None,
        "error": None,
    }
    assert body["steps_history"][1]["progress"] == {"percentage": 40.0, "message": "reading"}
    assert body["steps_history"][1]["duration_seconds"] is None
    assert [h["step_name"] for h in body["steps_history"]] == ["a", "b", "c"]
    assert body["tracking_urls"] == {
        "status": "/executions/e1/status",
        "steps": "/executions/e1/steps",
        "websocket": "/ws/e1",
    }


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ([], (4, 0, 0, 0, 0.0, False, False, True)),
        ([("a", True)], (4, 1, 0, 0, 25.0, False, False, True)),
        ([("a", True), ("b", True), ("c", True), ("d", True)], (4, 4, 0, 0, 100.0, True, False, False)),
        ([("a", False)], (4, 0, 1, 3, 0.0, False, True, False)),
        ([("a", True), ("b", False)], (4, 1, 1, 2, 25.0, False, True, False)),
    ],
    ids=["started", "one-of-four", "all-done", "first-failed", "second-failed"],
)
def test_progress_counts_and_percentages(script: list[tuple[str, bool]], expected: tuple[Any, ...]) -> None:
    state = started(step("a"), step("b"), step("c"), step("d"))
    for when, (name, ok) in enumerate(script, start=1):
        state = finish(state, name, when, StepSucceeded() if ok else StepFailed("no", retryable=False))
    p = progress_view(state)
    assert (
        p.total_steps,
        p.completed_steps,
        p.failed_steps,
        p.skipped_steps,
        p.percentage,
        p.is_completed,
        p.is_failed,
        p.is_running,
    ) == expected


def test_an_untaken_branch_counts_as_done_so_a_completed_execution_shows_100() -> None:
    state = started(step("a"), step("b", after=["a"]), step("c", after=["a"]))
    state = finish(state, "a", 1, StepSucceeded(next=("b",)))
    state = finish(state, "b", 2, StepSucceeded())
    p = progress_view(state)
    assert (p.completed_steps, p.skipped_steps, p.percentage, p.is_completed) == (2, 1, 100.0, True)


def test_a_cancelled_execution_is_neither_failed_nor_running() -> None:
    state = cancel(started(step("a"), step("b")), at(5))[0]
    p = progress_view(state)
    assert (p.percentage, p.is_completed, p.is_failed, p.is_running) == (0.0, False, False, False)
    assert status_view(state).steps_history[0].status == "cancelled"


def test_a_paused_execution_shows_its_waiting_steps_as_current() -> None:
    state = started(step("a"), step("b", after=[]), mode=ExecutionMode.MANUAL)
    body = status_view(state)
    assert body.status == "paused" and not body.progress.is_running
    assert [(c.name, c.order) for c in body.current_steps] == [("a", 1), ("b", 2)]
    assert body.steps_history == []


def test_the_steps_view_lists_every_step_with_its_state() -> None:
    state = started(step("a", retry=2), step("b", kind="external", type="review"), step("c", after=["a"]))
    state = finish(state, "a", 3, StepFailed("flaky"))
    state = finish(state, "a", 4, StepSucceeded({"n": 1}))
    view = steps_view(state).model_dump(mode="json")
    assert (view["execution_id"], view["workflow_id"], view["status"]) == ("e1", "wf-1", "running")
    a, b, c = view["steps"]
    assert (a["name"], a["order"], a["status"], a["attempt"], a["task_id"]) == ("a", 1, "completed", 2, "e1:a:2")
    assert (a["result"], a["error"], a["after"]) == ({"n": 1}, None, [])
    assert a["duration_seconds"] == 1.0  # the second attempt, sent at 3 s, finished at 4 s
    assert (b["kind"], b["type"], b["after"], b["status"]) == ("external", "review", ["a"], "running")
    assert (c["after"], c["status"], c["task_id"]) == (["a"], "running", "e1:c:1")
