"""What the registry reads off a task event besides its status (which `protocol.events.TaskEvent`
derives and checks): the attempt it belongs to."""

from __future__ import annotations

from protocol.events import ATTEMPT_SEQ_STRIDE, TaskEvent


def attempt_of(event: TaskEvent) -> int:
    """The task attempt an event belongs to: its own word for it, else what its seq encodes."""
    for name in ("attempt", "attempts"):
        value = event.data.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return event.seq // ATTEMPT_SEQ_STRIDE
