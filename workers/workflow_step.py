"""What a workflow step's handler sees of its execution: `ctx.workflow` (None for a plain task).

The workflow engine puts it in the step task's `metadata.workflow`; the reference's step functions get
the same two things as arguments, `step(context, config)`: here they are `ctx.workflow.context` and
`ctx.workflow.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.envelope import TaskMetadata


@dataclass(frozen=True)
class ExecutionContext:
    """The execution's context as the step was sent: its input merged with every earlier step's
    returned `context`."""

    execution_id: str
    dynamic_properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkflowStep:
    """The step this task runs: which execution, workflow, step and attempt, the step's `config` from
    the definition, and the execution context."""

    execution_id: str
    workflow_id: str
    step: str
    attempt: int
    config: Mapping[str, Any]
    context: ExecutionContext


class _Wire(BaseModel):
    # Lenient on extra keys: a newer orchestrator may send more than this runtime knows.
    model_config = ConfigDict(extra="ignore")

    execution_id: str = Field(min_length=1)
    workflow_id: str = Field(min_length=1)
    step: str = Field(min_length=1)
    attempt: int = Field(ge=1)
    config: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)


def workflow_step(metadata: TaskMetadata) -> WorkflowStep | None:
    """The step `metadata.workflow` describes; None when the task is no workflow step (or says so badly)."""
    if metadata.source != "workflow" or not metadata.model_extra:
        return None
    try:
        wire = _Wire.model_validate(metadata.model_extra.get("workflow"))
    except ValidationError:
        return None
    properties = wire.context.get("dynamic_properties")
    return WorkflowStep(
        execution_id=wire.execution_id,
        workflow_id=wire.workflow_id,
        step=wire.step,
        attempt=wire.attempt,
        config=MappingProxyType(wire.config),
        context=ExecutionContext(
            execution_id=str(wire.context.get("execution_id") or wire.execution_id),
            dynamic_properties=MappingProxyType(properties if isinstance(properties, dict) else {}),
        ),
    )
