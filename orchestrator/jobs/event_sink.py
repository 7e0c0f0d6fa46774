"""EventSink: an event applied to the registry, counted, and announced to every replica.

Shared by the AMQP event consumer and by services that publish events over a WebSocket.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from orchestrator.jobs.ports import JobCounters, TaskRegistry, UpdateBus
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.models import JobUpdate
from orchestrator.store.registry import REFUSALS, ApplyOutcome
from plumbing.burst_log import BurstLog
from protocol.events import TaskEvent
from protocol.services import WORKFLOW_SERVICE

log = logging.getLogger(__name__)


StepListener = Callable[[TaskEvent], Awaitable[None]]


class EventSink:
    """`on_step_event` hears every accepted event of a workflow step task (the workflow engine), after
    the registry applied it and before the caller acks it: an outcome is never lost between the two."""

    def __init__(
        self,
        registry: TaskRegistry,
        bus: UpdateBus,
        metrics: OrchestratorMetrics,
        on_step_event: StepListener | None = None,
        stats: JobCounters | None = None,
    ) -> None:
        self._stats = stats
        self._registry = registry
        self._bus = bus
        self._metrics = metrics
        self._on_step_event = on_step_event
        self._refusals = BurstLog(log)

    async def accept(self, event: TaskEvent) -> JobUpdate | None:
        """The update a worker's (or service's) event produced (its announcement under way), or None when
        it was dropped; RegistryError when Redis failed."""
        if event.service == WORKFLOW_SERVICE:
            # Only the workflow engine speaks for an execution itself, and never over the broker.
            self.refuse("wrong_service", event)
            return None
        outcome = await self._apply(event)
        # A step's redelivered outcome is dropped by the registry as a repeat but must still reach the
        # engine: the replica that applied it may have died before advancing (advancing twice is a no-op).
        # A refused (forged) one must not.
        step_event = event.task_id.startswith(event.global_task_id + ":")
        if self._on_step_event is not None and step_event and outcome.dropped not in REFUSALS:
            await self._on_step_event(event)
        return outcome.update

    async def apply_own(self, event: TaskEvent) -> JobUpdate | None:
        """Apply and announce an event whatever its service: the workflow engine's own events."""
        return (await self._apply(event)).update

    async def _apply(self, event: TaskEvent) -> ApplyOutcome:
        outcome = await self._registry.apply(event)
        update = outcome.update
        if update is None:
            reason = outcome.dropped or "unknown"
            if reason in REFUSALS:
                self.refuse(reason, event)
            else:
                self._metrics.events_dropped.labels(reason=reason).inc()
            return outcome
        self._metrics.events_applied.labels(event=event.event.value).inc()
        if update.terminal:
            self._metrics.job_finished(outcome.job_type, update.status, outcome.created_at)
            if self._stats is not None:
                # The root task's service: the event that ends a job is its root task's (or the engine's).
                self._stats.job_finished(update.tenant_id, event.service, update.status, outcome.created_at)
        # Not awaited: the update's place in the bus's order is taken now, and waiting for the
        # PUBLISH would only hold this lane's next event back a round trip. Should it fail, the
        # event stays applied: requeueing would only find it stale.
        self._bus.announce(update)
        return outcome

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
