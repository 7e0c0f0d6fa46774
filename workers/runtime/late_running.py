"""When a handler with `track_started=False` still announces `running`: once it has run LATE_RUNNING_SECONDS.

Such a handler publishes no `running` event as it starts: a short task, the case the option is for,
goes from `queued` straight to its outcome. A long one would otherwise read `queued` for its whole run,
and the orchestrator's sweeper republishes a job queued past BATON_STUCK_QUEUED_SECONDS whose message
is no longer ready (it takes that for a lost message): the task would run twice. So a handler still
running LATE_RUNNING_SECONDS after it started gets its `running` event then.

This module decides only when; the attempt (workers.runtime.attempt) makes the announcement, the same
transient event as an immediate one, sent through its Advisories with the next seq of its EventSequence.
The announcement is dropped for good when the handler reports progress (that event marks the job running
already) and when it finishes, whichever way: the timer is cancelled synchronously in the handler's own
task as it ends, before anything can take the outcome's seq, so no running event follows the outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

# Long enough that a short task (most of them) sends nothing extra, short next to any sensible
# BATON_STUCK_QUEUED_SECONDS (3600 s by default).
LATE_RUNNING_SECONDS: Final[float] = 10.0

T = TypeVar("T")


class LateRunning:
    """The `running` announcement of one attempt, made by `announce` unless it is dropped first."""

    def __init__(self, announce: Callable[[], None], delay_seconds: float = LATE_RUNNING_SECONDS) -> None:
        self._announce = announce
        self._delay = delay_seconds
        self._timer: asyncio.TimerHandle | None = None
        self._done = False  # announced or dropped: never armed again

    async def around(self, handler: Callable[[], Awaitable[T]]) -> T:
        """Run the handler (`handler()` makes its coroutine), announcing it should it run past the delay.

        The handler's coroutine is made here, inside the task that runs it, so a run that never starts
        (its execution stopped first) leaves no coroutine unawaited.
        """
        if not self._done:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._fire)
        try:
            return await handler()
        finally:
            self.drop()

    def drop(self) -> None:
        """No announcement from now on; a timer already due but not yet run is cancelled too."""
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if self._done:
            return
        self._done = True
        self._announce()
