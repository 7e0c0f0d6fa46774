"""What the registry reads off a task event besides its status (which `protocol.events.TaskEvent`
derives and checks): the attempt it belongs to, and what it records of the job's progress or outcome."""

from __future__ import annotations

from protocol.codec import compact_json
from protocol.events import ATTEMPT_SEQ_STRIDE, TERMINAL_STATUSES, JobStatus, TaskEvent


def attempt_of(event: TaskEvent) -> int:
    """The task attempt an event belongs to: its own word for it, else what its seq encodes."""
    for name in ("attempt", "attempts"):
        value = event.data.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return event.seq // ATTEMPT_SEQ_STRIDE


def recorded_fields(event: TaskEvent, status: str) -> tuple[str, str, str]:
    """The job's `progress`, `result` and `error` as this event sets them (JSON text, "" when it sets none)."""
    if status not in TERMINAL_STATUSES:
        # A workflow step's event carries the execution's progress, aggregated from its steps: the job
        # (the execution) takes that, not the step's own.
        progress = event.data.get("execution_progress", event.data.get("progress"))
        return (compact_json(progress) if isinstance(progress, dict) else ""), "", ""
    if status == JobStatus.COMPLETED:
        return "", compact_json(event.data.get("result")), ""
    if status == JobStatus.CANCELLED:
        return "", "", compact_json({"reason": event.data.get("reason"), "status": status})
    error = {
        "error": event.data.get("error"),
        "error_type": event.data.get("error_type"),
        "attempts": event.data.get("attempts"),
        "status": status,
    }
    traceback = event.data.get("traceback")
    if isinstance(traceback, str):
        error["traceback"] = traceback  # a handler's exception: where it failed (the worker bounds it)
    return "", "", compact_json(error)
