"""Event sequence numbers of one task delivery: attempt * ATTEMPT_SEQ_STRIDE + n.

The registry drops an event whose seq is not above the last one it saw for the task. A
redelivered message (a crash, a lost ack, a shutdown requeue) is the same attempt again,
so restarting n at 1 would get its events dropped. A redelivery therefore starts in the
upper half of the attempt's range, at an offset that grows with the time since the task
was created (10 ms resolution, about 80 minutes of range): a later redelivery starts
above an earlier one as long as that earlier run emitted fewer events than 10 ms ticks
elapsed, which any real handler satisfies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from protocol.envelope import TaskEnvelope, utc_now
from protocol.events import ATTEMPT_SEQ_STRIDE

_REDELIVERY_BASE: Final[int] = ATTEMPT_SEQ_STRIDE // 2
_REDELIVERY_SPAN: Final[int] = ATTEMPT_SEQ_STRIDE // 2 - 10_000  # head-room for the run's own events


class EventSequence:
    def __init__(self, attempt: int, start: int = 0) -> None:
        self._base = attempt * ATTEMPT_SEQ_STRIDE
        self._n = start

    @classmethod
    def for_delivery(cls, envelope: TaskEnvelope, *, redelivered: bool, now: datetime | None = None) -> EventSequence:
        if not redelivered:
            return cls(envelope.attempt)
        elapsed_ticks = int(((now or utc_now()) - envelope.created_at).total_seconds() * 100)
        return cls(envelope.attempt, _REDELIVERY_BASE + min(max(elapsed_ticks, 0), _REDELIVERY_SPAN))

    def next(self) -> int:
        self._n += 1
        return self._base + self._n
