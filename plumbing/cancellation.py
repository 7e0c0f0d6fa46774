"""Stopping a background task for good.

`task.cancel()` asks once; a library that catches the CancelledError and carries on (seen with
redis-py when the cancel lands inside a command) leaves the task running, and a shutdown that
awaits it hangs forever. Asking again until it has ended makes a stop a stop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

RECANCEL_AFTER_SECONDS: Final[float] = 0.5


async def cancel_and_wait(task: asyncio.Task[Any], *, recancel_after: float = RECANCEL_AFTER_SECONDS) -> None:
    """Cancel `task` until it is done. Its cancellation is the expected end; an exception it ended
    with instead is raised here, as awaiting it would."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=recancel_after)
    if not task.cancelled():
        task.result()
