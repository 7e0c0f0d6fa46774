"""GET /queues: per service, its depth, consumers, dead letters, rates and live workers.

The services are those /health asks the broker about (the built-in ones, and announced ones with a live
worker: announcements outlive their workers by a day). An admin key sees every tenant's figures; a tenant
key its own where they are per tenant (its lane's depth, its parked tasks, its rates) and the shared ones
(consumers, workers). Each dependency has a short timeout: a figure it could not give is null, never a
hung request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final, TypeVar

from orchestrator.broker.publisher import TaskPublisher
from orchestrator.broker.queue_inspector import QueueStats
from orchestrator.errors import BrokerError, RegistryError
from orchestrator.http.schemas import QueueRates, QueuesReport, QueueView, WorkerView
from orchestrator.jobs.dead_letter_replay import DeadLetterService
from orchestrator.store.directory import ServiceDirectory
from orchestrator.store.job_stats import JobStats, ServiceRates
from protocol.control import WorkerHeartbeat
from protocol.services import BUILTIN_SERVICES
from protocol.topology import dead_letter_queue, lane_queue, task_queue

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS: Final[float] = 2.0
T = TypeVar("T")


class QueueOverview:
    def __init__(
        self,
        publisher: TaskPublisher,
        directory: ServiceDirectory,
        dead_letters: DeadLetterService,
        stats: JobStats,
        *,
        timeout: float = CHECK_TIMEOUT_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._publisher = publisher
        self._directory = directory
        self._dead_letters = dead_letters
        self._stats = stats
        self._timeout = timeout
        self._clock = clock

    async def report(self, tenant_id: str | None) -> QueuesReport:
        services = await self._bounded("listing services", self._directory.services(), sorted(BUILTIN_SERVICES))
        workers = await self._bounded("reading workers", self._workers(services), {})
        shown = [s for s in services if s in BUILTIN_SERVICES or s in workers]
        lanes = await self._bounded("reading lanes", self._publisher.lane_queues(shown), None)
        stats, rates = await asyncio.gather(
            self._bounded("inspecting queues", self._queue_stats(shown, lanes), None),
            self._bounded("reading rates", self._stats.service_rates(shown, tenant_id), {}),
        )
        dead = await self._dead_letter_counts(shown, stats, tenant_id)
        now = self._clock()
        views = []
        for service in shown:
            main = stats.get(task_queue(service)) if stats is not None else None
            views.append(
                QueueView(
                    service=service,
                    queue=task_queue(service),
                    depth=_depth(service, tenant_id, stats, lanes),
                    consumers=main.consumers if main is not None else None,
                    dead_letters=dead.get(service),
                    rates=QueueRates.model_validate(rates.get(service, ServiceRates()), from_attributes=True),
                    workers=[_worker_view(hb, now) for hb in workers.get(service, [])],
                )
            )
        return QueuesReport(tenant_id=tenant_id, services=views)

    async def _workers(self, services: list[str]) -> dict[str, list[WorkerHeartbeat]]:
        """The heartbeats of the services with a live worker: which ones is one round trip however many
        services were announced; then one read per such service."""
        live = await self._directory.live_services(services)
        alive = [service for service in services if live.get(service) and live[service].workers]
        found = await asyncio.gather(*(self._directory.live_workers(service) for service in alive))
        return {service: heartbeats for service, heartbeats in zip(alive, found, strict=True) if heartbeats}

    async def _queue_stats(
        self, services: list[str], lanes: dict[str, list[str]] | None
    ) -> dict[str, QueueStats | None]:
        names = [task_queue(s) for s in services] + [dead_letter_queue(s) for s in services]
        names += [name for queues in (lanes or {}).values() for name in queues]
        return await self._publisher.queue_stats(names)

    async def _dead_letter_counts(
        self, services: list[str], stats: dict[str, QueueStats | None] | None, tenant_id: str | None
    ) -> dict[str, int | None]:
        if stats is None:
            return {}
        counts: dict[str, int | None] = {}
        for service in services:
            parked = stats.get(dead_letter_queue(service))
            total = parked.messages if parked is not None else 0
            if tenant_id is None or total == 0:
                counts[service] = total
                continue
            # A tenant's own parked tasks: read (never taken) off the queue, as GET /dead-letters does.
            page = await self._bounded(
                "scanning dead letters", self._dead_letters.list(service, tenant_id, offset=0, limit=1), None
            )
            counts[service] = page.matched if page is not None else None
        return counts

    async def _bounded(self, action: str, work: Awaitable[T], fallback: T) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await work
        except (BrokerError, RegistryError, TimeoutError) as exc:
            log.warning("queues: %s failed: %s", action, exc)
            return fallback


def _depth(
    service: str,
    tenant_id: str | None,
    stats: dict[str, QueueStats | None] | None,
    lanes: dict[str, list[str]] | None,
) -> int | None:
    if stats is None or lanes is None:
        return None
    if tenant_id is not None:
        # Every job of a tenant is published to its own lane of the service.
        own = stats.get(lane_queue(service, tenant_id)) if lane_queue(service, tenant_id) in lanes[service] else None
        return own.messages if own is not None else 0
    main = stats.get(task_queue(service))
    in_lanes = sum(found.messages for name in lanes[service] if (found := stats.get(name)) is not None)
    return (main.messages if main is not None else 0) + in_lanes


def _worker_view(heartbeat: WorkerHeartbeat, now: datetime) -> WorkerView:
    return WorkerView(
        worker_id=heartbeat.worker_id,
        host=heartbeat.hostname,
        pid=heartbeat.pid,
        concurrency=heartbeat.concurrency,
        in_flight=heartbeat.in_flight,
        last_heartbeat=heartbeat.timestamp,
        age_seconds=round(max(0.0, (now - heartbeat.timestamp).total_seconds()), 3),
    )
