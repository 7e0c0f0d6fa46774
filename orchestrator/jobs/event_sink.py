"""EventSink: an event applied to the registry, counted, and announced to every replica.

Shared by the AMQP event consumer and by services that publish events over a WebSocket.
"""

from __future__ import annotations

import logging

from orchestrator.live.update_bus import UpdateBus
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.models import JobUpdate
from orchestrator.store.registry import REFUSALS, RedisTaskRegistry
from plumbing.burst_log import BurstLog
from protocol.events import TaskEvent

log = logging.getLogger(__name__)


class EventSink:
    def __init__(self, registry: RedisTaskRegistry, bus: UpdateBus, metrics: OrchestratorMetrics) -> None:
        self._registry = registry
        self._bus = bus
        self._metrics = metrics
        self._refusals = BurstLog(log)

    async def accept(self, event: TaskEvent) -> JobUpdate | None:
        """The update the event produced (its announcement under way), or None when it was dropped;
        RegistryError when Redis failed."""
        outcome = await self._registry.apply(event)
        update = outcome.update
        if update is None:
            reason = outcome.dropped or "unknown"
            if reason in REFUSALS:
                self.refuse(reason, event)
            else:
                self._metrics.events_dropped.labels(reason=reason).inc()
            return None
        self._metrics.events_applied.labels(event=event.event.value).inc()
        if update.terminal:
            self._metrics.job_finished(outcome.job_type, update.status, outcome.created_at)
        # Not awaited: the update's place in the bus's order is taken now, and waiting for the
        # PUBLISH would only hold this lane's next event back a round trip. Should it fail, the
        # event stays applied: requeueing would only find it stale.
        self._bus.announce(update)
        return update

    def refuse(self, reason: str, event: TaskEvent, routing_key: str | None = None) -> None:
        """Count an event refused as forged or corrupt, and say so in the log once per burst."""
        self._metrics.events_dropped.labels(reason=reason).inc()
        self._refusals.warning(
            reason,
            "refused %s: %s of task %s of job %s (tenant %s, service %s, seq %d%s)",
            reason,
            event.event.value,
            event.task_id,
            event.global_task_id,
            event.tenant_id,
            event.service,
            event.seq,
            "" if routing_key is None else f", routing key {routing_key!r}",
        )
