"""What the advance step asks its caller to do, as data; the caller performs them in the given order,
after the new state is stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.workflows.definition import StepKind
from orchestrator.workflows.state import ExecutionStatus
from protocol.events import EventType


@dataclass(frozen=True)
class RunStep:
    """Send one attempt of a step: a task of the execution's job for a worker step; for an external
    step, nothing to publish, the step now takes reports. `payload` has its references resolved;
    `context` is the execution's dynamic_properties when the attempt was sent."""

    step: str
    attempt: int
    task_id: str
    type: str
    kind: StepKind
    payload: dict[str, Any]
    config: dict[str, Any]
    timeout_ms: int | None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelStep:
    """Cancel the running attempt `task_id` of a step (a control broadcast to the workers)."""

    step: str
    task_id: str


@dataclass(frozen=True)
class Emit:
    """Publish a workflow event on the execution's job channels, with `data` as its data."""

    event: EventType
    data: dict[str, Any]


@dataclass(frozen=True)
class Finish:
    """The execution reached a terminal status: settle its job with it."""

    status: ExecutionStatus


Action = RunStep | CancelStep | Emit | Finish
