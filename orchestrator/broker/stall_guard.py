"""Fail fast while the link to RabbitMQ is stalled, and only then.

A black-holed link (a dead network path, a frozen broker) keeps its TCP connection open, so every
publish would wait for its full timeout. A busy broker is different: its confirms come late but
keep coming. The guard tells the two apart by the link's silence: an operation fails early only
when nothing at all (no confirm, no refusal) came back from the broker for `stall_after` seconds
while it waited. Then the guard refuses the following publishes at once and probes the link in the
background; the first probe answered in time lets publishing resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from plumbing.cancellation import cancel_and_wait

log = logging.getLogger(__name__)

T = TypeVar("T")


class LinkStalled(TimeoutError):
    """No answer from the broker for `stall_after` seconds while an operation waited."""


class StallGuard:
    def __init__(
        self,
        probe: Callable[[], Awaitable[object]],
        *,
        stall_after: float,
        probe_timeout: float,
        interval: float,
    ) -> None:
        self._probe = probe
        self._stall_after = stall_after
        self._probe_timeout = probe_timeout
        self._interval = interval
        self._prober: asyncio.Task[None] | None = None
        self._waiting = 0
        self._last_answer = 0.0

    @property
    def stalled(self) -> bool:
        return self._prober is not None and not self._prober.done()

    async def guard(self, operation: Awaitable[T], timeout: float) -> T:
        """Await a broker round trip: its result, LinkStalled when the link went silent meanwhile,
        or TimeoutError after `timeout` even though the link kept answering (a very busy broker)."""
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(operation)
        if self._waiting == 0:
            self._last_answer = loop.time()  # silence is counted from the first unanswered operation
        self._waiting += 1
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = min(deadline, self._last_answer + self._stall_after) - loop.time()
                if remaining <= 0:
                    break
                done, _ = await asyncio.wait({task}, timeout=remaining)
                if done:
                    self._last_answer = loop.time()
                    return task.result()
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            self._waiting -= 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if loop.time() < deadline:
            self.trip()
            raise LinkStalled(f"no answer from RabbitMQ for {self._stall_after:g} s")
        raise TimeoutError(f"no confirm within {timeout:g} s")

    def trip(self) -> None:
        """Refuse until a probe succeeds."""
        if not self.stalled:
            log.warning("RabbitMQ link stalled: refusing publishes until it answers again")
            self._prober = asyncio.create_task(self._probe_until_answered(), name="baton-stall-probe")

    async def close(self) -> None:
        if self._prober is not None:
            await cancel_and_wait(self._prober)
            self._prober = None

    async def _probe_until_answered(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                async with asyncio.timeout(self._probe_timeout):
                    await self._probe()
            except Exception as exc:  # any failure means: still stalled
                log.debug("stall probe failed: %s", exc)
                continue
            log.info("RabbitMQ link answers again: publishing resumes")
            return
