"""The worker side of workflows without a broker: `ctx.workflow` read from the step task's metadata,
and workflows declared beside the handlers."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.control import WorkflowAnnouncement
from protocol.envelope import TaskMetadata
from workers import Worker, step
from workers.errors import ConfigurationError
from workers.workflow_step import workflow_step

STEP_METADATA: dict[str, Any] = {
    "source": "workflow",
    "workflow": {
        "execution_id": "exec-1",
        "workflow_id": "wf",
        "step": "b",
        "attempt": 2,
        "config": {"model": "small"},
        "context": {"execution_id": "exec-1", "dynamic_properties": {"doc": "d-1", "seen_a": True}},
        "added_by_a_newer_orchestrator": 1,
    },
}


def test_a_step_task_shows_its_execution_config_and_context() -> None:
    found = workflow_step(TaskMetadata.model_validate(STEP_METADATA))
    assert found is not None
    assert (found.execution_id, found.workflow_id, found.step, found.attempt) == ("exec-1", "wf", "b", 2)
    assert dict(found.config) == {"model": "small"}
    assert found.context.execution_id == "exec-1"
    assert dict(found.context.dynamic_properties) == {"doc": "d-1", "seen_a": True}
    with pytest.raises(TypeError):
        found.config["model"] = "large"  # type: ignore[index]


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"source": "api", "workflow": STEP_METADATA["workflow"]},
        {"source": "workflow"},
        {"source": "workflow", "workflow": {"step": "b"}},
        {"source": "workflow", "workflow": "not an object"},
    ],
)
def test_a_plain_task_or_a_garbled_step_has_no_workflow(metadata: dict[str, Any]) -> None:
    assert workflow_step(TaskMetadata.model_validate(metadata)) is None


def test_a_worker_declares_workflows_beside_its_handlers() -> None:
    worker = Worker("docs")
    declared = worker.workflow(
        "two_steps",
        name="Two steps",
        steps=[
            step("first", "echo_request", payload={"text": "$input.text"}, config={"loud": True}),
            step("second", "echo_request", after=["first"], retry=3, timeout_ms=5000),
        ],
        on_failure="continue",
    )
    assert list(worker.workflows) == ["two_steps"]
    assert declared.definition() == {
        "name": "Two steps",
        "steps": [
            {"name": "first", "type": "echo_request", "payload": {"text": "$input.text"}, "config": {"loud": True}},
            {"name": "second", "type": "echo_request", "after": ["first"], "retry": 3, "timeout_ms": 5000},
        ],
        "on_failure": "continue",
    }
    announcement = WorkflowAnnouncement(worker_id="w-1", service="docs", workflows=[declared.announced()])
    assert announcement.workflows[0].workflow_id == "two_steps"


def test_a_declaration_that_cannot_be_announced_is_refused_at_once() -> None:
    worker = Worker("docs")
    worker.workflow("once", name="Once", steps=[step("a", "echo_request")])
    with pytest.raises(ConfigurationError, match="already declared"):
        worker.workflow("once", name="Again", steps=[step("a", "echo_request")])
    with pytest.raises(ConfigurationError, match="must match"):
        worker.workflow("has/slash", name="Slash", steps=[step("a", "echo_request")])
    with pytest.raises(ConfigurationError, match="at least one step"):
        worker.workflow("empty", name="Empty", steps=[])
    with pytest.raises(ConfigurationError, match="`name` and a `type`"):
        worker.workflow("typeless", name="Typeless", steps=[{"name": "a"}])
    with pytest.raises(ConfigurationError, match="job type"):
        step("a", "no spaces allowed")
