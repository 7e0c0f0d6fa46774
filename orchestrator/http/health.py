"""Health of the orchestrator's dependencies, for GET /health and for the gauges GET /metrics refreshes.

Every check has its own short timeout, so a hung broker or Redis makes the answer "down",
never a hung request. /health needs no key, so a report is computed at most once per
`cache_seconds` and concurrent callers share the computation: any rate of requests costs the
broker and Redis one round of checks per period.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from orchestrator.broker.deployment_check import DeploymentHealth
from orchestrator.broker.event_consumer import ConsumerState
from orchestrator.broker.publisher import TaskPublisher
from orchestrator.broker.queue_inspector import QueueStats
from orchestrator.errors import BrokerError, RegistryError
from orchestrator.http.breaker_summary import CLOSED, TargetBreakers, by_target
from orchestrator.http.schemas import FlowLimitsHealth, HealthReport, ServiceHealth
from orchestrator.live.update_bus import BusState
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.store.directory import LiveService, ServiceDirectory
from orchestrator.store.flow_limits import FlowLimitStats, ServiceLimits
from orchestrator.store.registry import RedisTaskRegistry
from protocol.services import BUILTIN_SERVICES
from protocol.topology import dead_letter_queue, task_queue

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS: Final[float] = 1.0
CACHE_SECONDS: Final[float] = 2.0


@dataclass(frozen=True)
class LiveStatus:
    """This replica's own links, as /health reports them."""

    event_consumer: ConsumerState
    update_bus: BusState
    deployment: DeploymentHealth


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
        cache_seconds: float = CACHE_SECONDS,
        flow_limits: FlowLimitStats | None = None,
    ) -> None:
        self._live_status = live_status
        self._flow_limits = flow_limits
        self._publisher = publisher
        self._registry = registry
        self._directory = directory
        self._metrics = metrics
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._latest: HealthReport | None = None
        self._latest_at = float("-inf")
        self._computing: asyncio.Task[HealthReport] | None = None
        self._gauged: set[str] = set()  # services with gauge series
        self._breakers: dict[str, list[TargetBreakers]] = {}  # by service, as of the latest report
        self._gauged_breakers: set[tuple[str, str]] = set()  # (service, target) with gauge series
        self._encoded: tuple[HealthReport, bytes] | None = None

    async def report(self) -> HealthReport:
        """The latest report, at most `cache_seconds` old."""
        if self._latest is not None and time.monotonic() - self._latest_at < self._cache_seconds:
            return self._latest
        if self._computing is None:
            self._computing = asyncio.create_task(self._compute(), name="baton-health-report")
        # Shielded: a caller that goes away (a client hanging up) does not cancel it for the others.
        return await asyncio.shield(self._computing)

    async def report_json(self) -> tuple[HealthReport, bytes]:
        """The latest report and its JSON text, encoded once per report rather than per request."""
        report = await self.report()
        encoded = self._encoded
        if encoded is None or encoded[0] is not report:
            encoded = self._encoded = (report, report.model_dump_json().encode())
        return encoded

    async def _compute(self) -> HealthReport:
        try:
            report = await self._check()
            self._latest, self._latest_at = report, time.monotonic()
            return report
        finally:
            self._computing = None

    async def _check(self) -> HealthReport:
        redis_up = await self._redis_up()
        services = await self._services() if redis_up else sorted(BUILTIN_SERVICES)
        # The built-in queues tell whether the broker answers. Announced services only add detail:
        # anything that can publish an event can announce one, so however many there are and
        # however slow their queues are to ask, they never make the broker look down.
        # Only announced services with a live worker have their queue asked: announcements outlive
        # their workers by a day, and each queue asked is a passive declare (hundreds of stale ones
        # made the check miss its timeout).
        live = await self._live_services(services) if redis_up else {}
        builtin = [service for service in services if service in BUILTIN_SERVICES]
        announced = [s for s in services if s not in BUILTIN_SERVICES and s in live and live[s].workers]
        # Lanes are detail too: however many tenants a service has, they never make the broker look down.
        builtin_stats, announced_stats, dead_letters, limits, lanes = await asyncio.gather(
            self._queue_stats(builtin),
            self._queue_stats(announced) if announced else _nothing(),
            self._dead_letter_stats([*builtin, *announced]),
            self._limits() if redis_up else _nothing(),
            self._lane_messages([*builtin, *announced]) if redis_up else _unknown(),
        )
        broker_up = builtin_stats is not None
        stats = {**(builtin_stats or {}), **(announced_stats or {})}
        by_service: dict[str, ServiceHealth] = {}
        breakers = {service: by_target(found.breakers) for service, found in live.items() if found.breakers}
        for service in services:
            queue = task_queue(service)
            queue_stats = stats.get(queue)
            dead = dead_letters.get(dead_letter_queue(service))
            by_service[service] = ServiceHealth(
                queue=queue,
                messages=queue_stats.messages + lanes[service] if queue_stats and lanes is not None else None,
                consumers=queue_stats.consumers if queue_stats else None,
                dead_letters=dead.messages if dead else None,
                live_workers=live[service].workers if service in live else None,
                circuit_breakers=[b.health() for b in breakers.get(service, []) if b.state != CLOSED],
                limits=_limits_health(limits.get(service)),
            )
        self._breakers = breakers
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
        # Series of services no longer reported (forgotten by the directory) go: forged names
        # would otherwise grow /metrics without bound.
        for gone in self._gauged - report.services.keys():
            queue = task_queue(gone)
            for gauge, label in (
                (self._metrics.queue_depth, queue),
                (self._metrics.queue_consumers, queue),
                (self._metrics.live_workers, gone),
                (self._metrics.dead_letter_depth, gone),
            ):
                with contextlib.suppress(KeyError):
                    gauge.remove(label)
        self._gauged = set(report.services)
        for service, health in report.services.items():
            if health.messages is not None:
                self._metrics.queue_depth.labels(queue=health.queue).set(health.messages)
            if health.consumers is not None:
                self._metrics.queue_consumers.labels(queue=health.queue).set(health.consumers)
            if health.live_workers is not None:
                self._metrics.live_workers.labels(service=service).set(health.live_workers)
            if health.dead_letters is not None:
                self._metrics.dead_letter_depth.labels(service=service).set(health.dead_letters)
        self._refresh_breaker_gauges()
        self._metrics.show_flow_limits({s: h.limits for s, h in report.services.items() if h.limits is not None})

    def _refresh_breaker_gauges(self) -> None:
        series = {(service, b.target): b for service, found in self._breakers.items() for b in found}
        for gone in self._gauged_breakers - series.keys():
            for gauge in (self._metrics.breaker_state, self._metrics.breaker_openings):
                with contextlib.suppress(KeyError):
                    gauge.remove(*gone)
        self._gauged_breakers = set(series)
        for (service, target), summary in series.items():
            self._metrics.breaker_state.labels(service=service, target=target).set(summary.level)
            self._metrics.breaker_openings.labels(service=service, target=target).set(summary.opened_total)

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

    async def _dead_letter_stats(self, services: list[str]) -> dict[str, QueueStats | None]:
        """Stats of the services' dead-letter queues; detail like the lanes: never makes the broker look down."""
        if not self._publisher.connected or not services:
            return {}
        try:
            async with asyncio.timeout(self._timeout):
                return await self._publisher.queue_stats([dead_letter_queue(service) for service in services])
        except (BrokerError, TimeoutError) as exc:
            log.warning("health: cannot count the dead letters: %s", exc)
            return {}

    async def _limits(self) -> dict[str, ServiceLimits]:
        if self._flow_limits is None:
            return {}
        try:
            async with asyncio.timeout(self._timeout):
                return await self._flow_limits.read()
        except (RegistryError, TimeoutError):
            return {}

    async def _lane_messages(self, services: list[str]) -> dict[str, int] | None:
        """Ready messages in each service's tenant lanes; None when Redis or the broker cannot say."""
        try:
            async with asyncio.timeout(self._timeout):
                lanes = await self._publisher.lane_queues(services)
                names = [name for queues in lanes.values() for name in queues]
                stats = await self._publisher.queue_stats(names) if names else {}
        except (BrokerError, RegistryError, TimeoutError) as exc:
            log.warning("health: cannot count the tenant lanes: %s", exc)
            return None
        return {
            service: sum(found.messages for name in queues if (found := stats.get(name)) is not None)
            for service, queues in lanes.items()
        }

    async def _live_services(self, services: list[str]) -> dict[str, LiveService]:
        # One pipeline, not a command per service: with hundreds announced (a day of test runs on this
        # machine left 821) one command each missed the 1 s bound and no service showed live workers.
        try:
            async with asyncio.timeout(self._timeout):
                return await self._directory.live_services(services)
        except (RegistryError, TimeoutError):
            return {}


async def _nothing() -> dict[str, Any]:
    return {}


async def _unknown() -> None:
    return None


def _limits_health(limits: ServiceLimits | None) -> FlowLimitsHealth | None:
    return FlowLimitsHealth(**dataclasses.asdict(limits)) if limits is not None else None
