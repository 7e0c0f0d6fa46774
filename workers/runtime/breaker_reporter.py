"""CircuitBreakerReport: this process's breakers, published with each heartbeat so the orchestrator's
/health and /metrics show them (workers serve no HTTP of their own)."""

from __future__ import annotations

import logging

from protocol.control import CircuitBreakerReport
from workers.breaker import CircuitBreakers
from workers.errors import BrokerError
from workers.runtime.event_publisher import EventPublisher

log = logging.getLogger(__name__)


class BreakerReporter:
    def __init__(self, *, worker_id: str, service: str, breakers: CircuitBreakers, events: EventPublisher) -> None:
        self._worker_id = worker_id
        self._service = service
        self._breakers = breakers
        self._events = events

    def build(self) -> CircuitBreakerReport | None:
        """The report, or None while the process has called no target (nothing to say)."""
        if not len(self._breakers):
            return None
        return CircuitBreakerReport(
            worker_id=self._worker_id, service=self._service, breakers=self._breakers.statuses()
        )

    async def report(self) -> None:
        report = self.build()
        if report is None:
            return
        try:
            await self._events.publish_breakers(report)
        except BrokerError as exc:
            log.warning("circuit breaker report not published (the next heartbeat sends another): %s", exc)
