"""Fail fast while the link to RabbitMQ is stalled.

A black-holed link (a dead network path, a frozen broker) keeps its TCP connection open, so every
publish would wait its full confirm timeout. After one publish went unconfirmed in time, the guard
refuses the following ones at once and probes the link in the background; the first probe that
gets an answer in time lets publishing resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class StallGuard:
    def __init__(self, probe: Callable[[], Awaitable[object]], *, probe_timeout: float, interval: float) -> None:
        self._probe = probe
        self._probe_timeout = probe_timeout
        self._interval = interval
        self._prober: asyncio.Task[None] | None = None

    @property
    def stalled(self) -> bool:
        return self._prober is not None and not self._prober.done()

    def trip(self) -> None:
        """A publish got no confirm in time: refuse until a probe succeeds."""
        if not self.stalled:
            log.warning("RabbitMQ link stalled: refusing publishes until it answers again")
            self._prober = asyncio.create_task(self._probe_until_answered(), name="baton-stall-probe")

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
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
