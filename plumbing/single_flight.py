"""One call in flight per key: concurrent callers asking for the same key share its outcome.

A cache refilled when stale is refilled by the first caller that finds it so; without this, every
caller that arrived while that read was under way sent the same read again (the jobs of a batch in
flight at once each read the directory's routes and the declared workflows when their copies expired).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class SingleFlight(Generic[Key, Value]):
    def __init__(self) -> None:
        self._running: dict[Key, asyncio.Future[Value]] = {}

    async def run(self, key: Key, call: Callable[[], Awaitable[Value]]) -> Value:
        """`call()`'s outcome (value or error), shared with every caller of `key` while it runs. A caller
        cancelled while waiting leaves the call running for the others."""
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(call())
            self._running[key] = running
            running.add_done_callback(partial(self._finished, key))
        return await asyncio.shield(running)

    def forget(self, key: Key) -> None:
        """The next caller of `key` starts a call of its own (what the running one reads may be out of date);
        those already waiting still get the running one's outcome."""
        self._running.pop(key, None)

    def _finished(self, key: Key, done: asyncio.Future[Value]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # its waiters get it; if all of them gave up, it is not logged as never retrieved
