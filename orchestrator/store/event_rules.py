"""What a task event may say before the registry applies it: a status its type can carry. Checks that
need the job's state are in the apply script; how deep its data may nest, in the codecs."""

from __future__ import annotations

from typing import Final

from protocol.events import ATTEMPT_SEQ_STRIDE, EventType, JobStatus, TaskEvent

_OPEN: Final[frozenset[str]] = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING})
# The statuses each event type can move a task to (DESIGN's Event table); a task_status_update
# claiming "completed" would end a job without a result.
_STATUSES: Final[dict[EventType, frozenset[str]]] = {
    EventType.TASK_STATUS_UPDATE: _OPEN,
    EventType.TASK_COMPLETED: frozenset({JobStatus.COMPLETED}),
    EventType.TASK_FAILED: frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT}),
    EventType.TASK_CANCELLED: frozenset({JobStatus.CANCELLED}),
    EventType.WORKFLOW_STARTED: _OPEN,
    EventType.STEP_STARTED: _OPEN,
    EventType.STEP_PROGRESS: _OPEN,
    EventType.STEP_FINISHED: _OPEN,
    EventType.WORKFLOW_COMPLETED: frozenset({JobStatus.COMPLETED}),
    EventType.WORKFLOW_FAILED: frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED}),
}


_STEP_EVENTS: Final[frozenset[EventType]] = frozenset(
    {EventType.STEP_STARTED, EventType.STEP_PROGRESS, EventType.STEP_FINISHED}
)


def task_status(event: TaskEvent) -> str:
    """The status this event moves its task to; ValueError when it names one its type cannot carry."""
    if event.event in _STEP_EVENTS:
        # The job is the execution: running while its steps come and go; a step's own status is data.
        status = JobStatus.RUNNING.value
    elif event.event is EventType.WORKFLOW_COMPLETED:
        status = JobStatus.COMPLETED.value
    elif event.event is EventType.WORKFLOW_FAILED:
        status = JobStatus(event.data.get("status", JobStatus.FAILED)).value
    else:
        status = event.status.value
    if status not in _STATUSES[event.event]:
        raise ValueError(f"a {event.event.value} event cannot move a task to {status}")
    return status


def attempt_of(event: TaskEvent) -> int:
    """The task attempt an event belongs to: its own word for it, else what its seq encodes."""
    for name in ("attempt", "attempts"):
        value = event.data.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return event.seq // ATTEMPT_SEQ_STRIDE
