"""Periodic WorkerHeartbeat: liveness, load and the job types this process serves; with each beat, its
circuit breakers (workers.runtime.breaker_reporter); with every few beats, the workflows its Worker
declares (workers.runtime.announcer)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime

from plumbing.cancellation import cancel_and_wait
from protocol.control import WorkerHeartbeat
from protocol.envelope import utc_now
from workers.errors import BrokerError
from workers.runtime.announcer import ANNOUNCE_EVERY_BEATS, WorkflowAnnouncer
from workers.runtime.breaker_reporter import BreakerReporter
from workers.runtime.event_publisher import EventPublisher
from workers.sdk import Worker

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        *,
        worker_id: str,
        worker: Worker,
        concurrency: int,
        interval_seconds: float,
        in_flight: Callable[[], int],
        events: EventPublisher,
        announcer: WorkflowAnnouncer | None = None,
        announce_every: int = ANNOUNCE_EVERY_BEATS,
        breakers: BreakerReporter | None = None,
    ) -> None:
        self._worker_id = worker_id
        self._worker = worker
        self._concurrency = concurrency
        self._interval = interval_seconds
        self._in_flight = in_flight
        self._events = events
        self._started_at: datetime = utc_now()
        self._hostname = socket.gethostname()
        self._task: asyncio.Task[None] | None = None
        self._announcer = announcer
        self._breakers = breakers
        self._announce_every = max(1, announce_every)
        self._beats = 0

    def build(self, *, stopping: bool = False) -> WorkerHeartbeat:
        return WorkerHeartbeat(
            worker_id=self._worker_id,
            service=self._worker.service,
            job_types=self._worker.job_types,
            concurrency=self._concurrency,
            in_flight=self._in_flight(),
            hostname=self._hostname,
            pid=os.getpid(),
            started_at=self._started_at,
            interval_seconds=self._interval,
            stopping=stopping,
            cache_ttls=self._worker.cache_ttls,
        )

    async def start(self) -> None:
        """Announce now (so the job types are routable at once), then every interval."""
        await self.beat()
        await self._announce()
        self._task = asyncio.create_task(self._loop(), name=f"heartbeat:{self._worker.service}")

    async def stop(self) -> None:
        """Stop the loop and say goodbye, so the directory does not wait for the beat to go stale."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        await self.beat(stopping=True)

    async def beat(self, *, stopping: bool = False) -> None:
        try:
            await self._events.publish_heartbeat(self.build(stopping=stopping))
        except BrokerError as exc:
            log.warning("heartbeat not published: %s", exc)

    async def _announce(self) -> None:
        if self._announcer is not None:
            await self._announcer.announce()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.beat()
                if self._breakers is not None:
                    await self._breakers.report()
                self._beats += 1
                if self._beats % self._announce_every == 0:
                    await self._announce()
            except Exception:
                # A bug here must not silently end the heartbeats (the worker would look dead).
                log.exception("heartbeat failed")
