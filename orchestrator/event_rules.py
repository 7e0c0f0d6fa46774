"""What a task event may say before the registry applies it: a status its type can carry, and data
plain enough to store and pass on. Checks that need the job's state are in the apply script."""

from __future__ import annotations

from typing import Any, Final

from protocol.events import ATTEMPT_SEQ_STRIDE, EventType, JobStatus, TaskEvent

# JSON nesting of an event's data (or metadata) that is stored and sent on: far beyond any result's
# shape, well within every encoder and decoder on the way (pydantic-core refuses at 255 levels,
# Python's json at about 1,000 and the msgpack encoder just above that).
MAX_DATA_DEPTH: Final[int] = 100
UNSTORABLE_ERROR_TYPE: Final[str] = "EventNotStorable"

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


def task_status(event: TaskEvent) -> str:
    """The status this event moves its task to; ValueError when it names one its type cannot carry."""
    if event.event is EventType.WORKFLOW_COMPLETED:
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


def too_deep(event: TaskEvent) -> bool:
    return _deeper_than(event.data, MAX_DATA_DEPTH) or _deeper_than(event.metadata, MAX_DATA_DEPTH)


def unstorable_outcome(event: TaskEvent) -> TaskEvent:
    """A task's outcome whose data cannot be stored, as the failure it becomes: the job must still end,
    with an error that says why rather than never."""
    error = f"the {event.event.value} event's data is nested deeper than {MAX_DATA_DEPTH} levels"
    data = {"error": error, "error_type": UNSTORABLE_ERROR_TYPE, "attempts": attempt_of(event), "status": "failed"}
    return event.model_copy(update={"event": EventType.TASK_FAILED, "data": data, "metadata": {}})


def _deeper_than(value: dict[str, Any], limit: int) -> bool:
    # Level by level, without recursion (the value may be nested deeper than the stack allows); a
    # container's items are scanned by type in C first, so a long vector of numbers costs little.
    level: list[Any] = [value]
    depth = 1
    while level:
        if depth > limit:
            return True
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            kinds = set(map(type, children))
            if dict in kinds or list in kinds:
                below.extend(c for c in children if type(c) is dict or type(c) is list)
        level = below
        depth += 1
    return False
