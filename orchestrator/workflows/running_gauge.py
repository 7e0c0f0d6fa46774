"""The running-executions gauge, read from Redis so that every replica reports the same total.

A gauge each replica moved for what it alone started and finished would be wrong as soon as one
replica finishes what another started (any replica advances any execution), and lost with a replica
killed mid-run. The count lives in Redis (`ExecutionStore.count_unfinished`) and is read here
every few seconds: /metrics is served by the HTTP layer, which only refreshes its own gauges.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, Protocol

from orchestrator.errors import RegistryError
from plumbing.cancellation import cancel_and_wait

log = logging.getLogger(__name__)

REFRESH_SECONDS: Final[float] = 2.0


class UnfinishedCounter(Protocol):
    async def count_unfinished(self) -> int: ...


class RunningExecutionsGauge:
    def __init__(
        self, executions: UnfinishedCounter, set_gauge: Callable[[float], None], interval: float = REFRESH_SECONDS
    ) -> None:
        self._executions = executions
        self._set_gauge = set_gauge
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_forever(), name="baton-workflow-running-gauge")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def refresh(self) -> None:
        self._set_gauge(await self._executions.count_unfinished())

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except RegistryError as exc:
                log.debug("running-executions gauge not refreshed: %s", exc)  # it keeps its last value
            await asyncio.sleep(self._interval)
