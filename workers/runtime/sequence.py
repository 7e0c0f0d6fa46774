"""Event sequence numbers of one task attempt: attempt * ATTEMPT_SEQ_STRIDE + n, n = 1, 2, 3...

The registry drops an event whose seq is not above the last one it saw for the task. An
attempt runs at most once: a redelivered message is never run again in place but
republished as the next attempt, so every run starts a fresh, higher range. The few events
a worker emits for a redelivered message without running it (its job was cancelled, or its
attempts are used up) come from the range after the attempt, above whatever its
interrupted run emitted.
"""

from __future__ import annotations

from protocol.envelope import TaskEnvelope
from protocol.events import ATTEMPT_SEQ_STRIDE


class EventSequence:
    def __init__(self, attempt: int) -> None:
        self._base = attempt * ATTEMPT_SEQ_STRIDE
        self._n = 0

    @classmethod
    def for_delivery(cls, envelope: TaskEnvelope, *, redelivered: bool) -> EventSequence:
        return cls(envelope.attempt + 1 if redelivered else envelope.attempt)

    def next(self) -> int:
        self._n += 1
        return self._base + self._n
