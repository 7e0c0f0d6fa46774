"""An attempt's running and progress events in flight: sent without the attempt waiting for their confirms.

Each goes out in a task of its own whose first step queues its frames on the publish channel, ahead of
anything the attempt sends later, its outcome among them: one channel into one queue, so RabbitMQ keeps
that order and a transient event cannot overtake the outcome (event_publisher's docstring). Only the
confirms are left outstanding. The attempt collects them (`settle`) before its message is acked, so a
broken channel is seen and logged; it is never raised, the events being informational. An attempt that
ends abnormally (cancelled, or a bug) stops them (`abandon`): none outlives its attempt.

Progress is paced: a report waits for the confirm of the one before it, so a handler reporting in a
tight loop has at most one unconfirmed progress event behind it, not an unbounded pile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from protocol.events import TaskEvent

log = logging.getLogger(__name__)


class Advisories:
    """The unconfirmed informational events of one attempt."""

    def __init__(self, publish: Callable[[TaskEvent], Coroutine[Any, Any, None]]) -> None:
        self._publish = publish
        self._pending: set[asyncio.Task[None]] = set()
        self._last_progress: asyncio.Task[None] | None = None
        self._abandoned = False

    def send(self, event: TaskEvent) -> None:
        """Publish `event`; its frames leave ahead of whatever the caller sends after this returns."""
        self._start(event)

    async def progress(self, event: TaskEvent) -> None:
        """Publish a progress event once the previous one is confirmed (or has failed)."""
        previous = self._last_progress
        if previous is not None and not previous.done():
            await asyncio.wait([previous])  # a cancel of the caller leaves that publish alone
        self._last_progress = self._start(event)

    async def settle(self) -> None:
        """Wait until every event sent has its confirm (or its failure, logged). Should this wait be
        cancelled, the publishes still due are cancelled too."""
        while self._pending:
            try:
                await asyncio.wait(set(self._pending))
            except asyncio.CancelledError:
                await self.abandon()
                raise

    async def abandon(self) -> None:
        """Cancel the publishes still due and wait until they have stopped."""
        self._abandoned = True
        pending = set(self._pending)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    def _start(self, event: TaskEvent) -> asyncio.Task[None]:
        task = asyncio.create_task(self._publish(event), name=f"advisory:{event.task_id}:{event.seq}")
        self._pending.add(task)
        task.add_done_callback(self._settled)
        return task

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if task.cancelled():
            if not self._abandoned:
                # aiormq fails the confirms still due with CancelledError when their channel closes.
                log.warning("informational event: its publish was cancelled (%s)", task.get_name())
            return
        error = task.exception()
        if error is not None and not self._abandoned:
            log.error("informational event: its publish failed (%s)", task.get_name(), exc_info=error)
