"""FakeUpdateBus: the update bus of one replica, with an in-memory channel in place of Redis pub/sub.

Replicas made on one `FakeChannel` hear each other's updates, as replicas on one Redis channel
do; a replica's own updates reach its listeners and watches at once, never twice.
Updates are delivered on the next loop turn to the other replicas (a PUBLISH is never synchronous).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from types import TracebackType

from orchestrator.models import JobUpdate

log = logging.getLogger(__name__)


class FakeChannel:
    """What a Redis pub/sub channel is to the replicas subscribed to it."""

    def __init__(self) -> None:
        self.subscribers: list[FakeUpdateBus] = []
        self.published: list[JobUpdate] = []  # every update sent, in order


class FakeWatch:
    def __init__(self, bus: FakeUpdateBus, tenant_id: str, job_id: str) -> None:
        self._bus = bus
        self.key = (tenant_id, job_id)
        self._done: asyncio.Future[JobUpdate] = asyncio.get_running_loop().create_future()

    def deliver(self, update: JobUpdate) -> None:
        if update.terminal and not self._done.done():
            self._done.set_result(update)

    async def terminal(self, timeout: float) -> JobUpdate | None:
        try:
            return await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except TimeoutError:
            return None

    def __enter__(self) -> FakeWatch:
        self._bus.watches.setdefault(self.key, set()).add(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        watches = self._bus.watches.get(self.key, set())
        watches.discard(self)
        if not watches:
            self._bus.watches.pop(self.key, None)
        self._done.cancel()


class FakeUpdateBus:
    def __init__(self, channel: FakeChannel | None = None) -> None:
        self._channel = channel or FakeChannel()
        self._channel.subscribers.append(self)
        self._listeners: list[Callable[[JobUpdate], None]] = []
        self.watches: dict[tuple[str, str], set[FakeWatch]] = {}

    @property
    def announced(self) -> list[JobUpdate]:
        """Every update sent on the channel (by any replica), in order."""
        return self._channel.published

    def announce(self, update: JobUpdate) -> asyncio.Future[None]:
        self._deliver(update)
        self._channel.published.append(update)
        loop = asyncio.get_running_loop()
        for other in self._channel.subscribers:
            if other is not self:
                loop.call_soon(other._deliver, update)
        sent: asyncio.Future[None] = loop.create_future()
        sent.set_result(None)
        return sent

    def announce_many(self, updates: Sequence[JobUpdate]) -> asyncio.Future[None]:
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for update in updates:
            self.announce(update)
        sent.set_result(None)
        return sent

    async def publish(self, update: JobUpdate) -> None:
        await self.announce(update)

    def add_listener(self, fn: Callable[[JobUpdate], None]) -> Callable[[], None]:
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn)

    def watch(self, tenant_id: str, job_id: str) -> FakeWatch:
        return FakeWatch(self, tenant_id, job_id)

    def _deliver(self, update: JobUpdate) -> None:
        for watch in list(self.watches.get((update.tenant_id, update.job_id), ())):
            watch.deliver(update)
        for listener in list(self._listeners):
            try:
                listener(update)
            except Exception:  # as the real bus: one broken listener must not starve the others
                log.exception("job update listener failed")
