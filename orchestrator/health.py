"""Health of the orchestrator's dependencies, for GET /health and for the gauges GET /metrics refreshes.

Every check has its own short timeout, so a hung broker or Redis makes the answer "down",
never a hung request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from orchestrator.directory import ServiceDirectory
from orchestrator.errors import BrokerError
from orchestrator.http_schemas import HealthReport, ServiceHealth
from orchestrator.live import LiveStatus
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.publisher import TaskPublisher
from orchestrator.queue_inspector import QueueStats
from orchestrator.registry import RedisTaskRegistry, RegistryError
from protocol.services import BUILTIN_SERVICES
from protocol.topology import task_queue

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS: Final[float] = 1.0


class HealthChecker:
    def __init__(
        self,
        publisher: TaskPublisher,
        registry: RedisTaskRegistry,
        directory: ServiceDirectory,
        metrics: OrchestratorMetrics,
        timeout: float = CHECK_TIMEOUT_SECONDS,
        *,
        live_status: Callable[[], LiveStatus],
    ) -> None:
        self._live_status = live_status
        self._publisher = publisher
        self._registry = registry
        self._directory = directory
        self._metrics = metrics
        self._timeout = timeout

    async def report(self) -> HealthReport:
        redis_up = await self._redis_up()
        services = await self._services() if redis_up else sorted(BUILTIN_SERVICES)
        stats, live = await asyncio.gather(
            self._queue_stats(services), self._live_workers(services) if redis_up else _nothing()
        )
        broker_up = stats is not None
        by_service: dict[str, ServiceHealth] = {}
        for service in services:
            queue = task_queue(service)
            queue_stats = stats.get(queue) if stats else None
            by_service[service] = ServiceHealth(
                queue=queue,
                messages=queue_stats.messages if queue_stats else None,
                consumers=queue_stats.consumers if queue_stats else None,
                live_workers=live.get(service),
            )
        state = self._live_status()
        down = [name for name, up in (("broker", broker_up), ("redis", redis_up)) if not up]
        return HealthReport(
            status="unavailable" if down else "ok",
            broker="up" if broker_up else "down",
            redis="up" if redis_up else "down",
            down=down,
            event_consumer=state.event_consumer,
            update_bus=state.update_bus,
            deployment=state.deployment,
            services=by_service,
        )

    async def refresh_metrics(self) -> None:
        """Queue depth, consumers and live workers as of now, for a Prometheus scrape."""
        report = await self.report()
        for service, health in report.services.items():
            if health.messages is not None:
                self._metrics.queue_depth.labels(queue=health.queue).set(health.messages)
            if health.consumers is not None:
                self._metrics.queue_consumers.labels(queue=health.queue).set(health.consumers)
            if health.live_workers is not None:
                self._metrics.live_workers.labels(service=service).set(health.live_workers)

    async def _redis_up(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._registry.ping()
        except (RegistryError, TimeoutError) as exc:
            log.warning("health: Redis is down: %s", exc)
            return False
        return True

    async def _services(self) -> list[str]:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._directory.services()
        except (RegistryError, TimeoutError):
            return sorted(BUILTIN_SERVICES)

    async def _queue_stats(self, services: list[str]) -> dict[str, QueueStats | None] | None:
        """Stats per queue; None when the broker is down or does not answer in time."""
        if not self._publisher.connected:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                return await self._publisher.queue_stats([task_queue(service) for service in services])
        except (BrokerError, TimeoutError) as exc:
            log.warning("health: RabbitMQ did not answer: %s", exc)
            return None

    async def _live_workers(self, services: list[str]) -> dict[str, int]:
        async def count(service: str) -> int:
            return len(await self._directory.live_workers(service))

        try:
            async with asyncio.timeout(self._timeout):
                counts = await asyncio.gather(*(count(service) for service in services))
        except (RegistryError, TimeoutError):
            return {}
        return dict(zip(services, counts, strict=True))


async def _nothing() -> dict[str, int]:
    return {}
