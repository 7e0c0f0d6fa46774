"""EventSink: an event applied to the registry, counted, and announced to every replica.

Shared by the AMQP event consumer and by services that publish events over a WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from orchestrator.jobs.ports import JobCounters, TaskRegistry, UpdateBus
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.models import JobUpdate
from orchestrator.store.registry import REFUSALS, ApplyOutcome
from plumbing.burst_log import BurstLog
from protocol.events import TaskEvent
from protocol.services import WORKFLOW_SERVICE

log = logging.getLogger(__name__)


StepListener = Callable[[TaskEvent], Awaitable[None]]
# Entered around each event's own part of a window's handling (its bookkeeping and its step listener
# call): the consumer's log context and tracing span of that event.
EventScope = Callable[[TaskEvent], AbstractContextManager[object]]


@dataclass(frozen=True)
class WindowOutcome:
    """What `accept_many` did with each event of a window, by position: the update it produced (None when
    dropped), and the events whose step listener failed (their error; the caller retries those)."""

    updates: list[JobUpdate | None]
    failed: dict[int, Exception]


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
            self.refuse("wrong_service", event)
            return None
        outcome, update = await self._apply_and_announce(event)
        if self._hears(event, outcome):
            await self._step_listener(event)
        return update

    async def accept_many(self, events: Sequence[TaskEvent], scope: EventScope | None = None) -> WindowOutcome:
        """`accept` for a delivery window's events: applied in order in one registry call, their updates
        announced together, then each step event heard (one job's in order, jobs side by side).
        RegistryError when Redis failed (none of the events is then known to be applied)."""
        enter = scope or _no_scope
        # Only the workflow engine speaks for an execution itself, and never over the broker.
        believed = [n for n, event in enumerate(events) if event.service != WORKFLOW_SERVICE]
        outcomes = dict(zip(believed, await self._registry.apply_many([events[n] for n in believed]), strict=True))
        updates: list[JobUpdate | None] = []
        steps: dict[str, list[int]] = {}
        for n, event in enumerate(events):
            with enter(event):
                outcome = outcomes.get(n)
                if outcome is None:
                    self.refuse("wrong_service", event)
                    updates.append(None)
                    continue
                updates.append(self._counted(event, outcome))
                if self._hears(event, outcome):
                    steps.setdefault(event.global_task_id, []).append(n)
        announced = [update for update in updates if update is not None]
        if announced:
            # Not awaited: the updates' place in the bus's order is taken now, and waiting for the
            # PUBLISH would only hold the next window back a round trip. Should it fail, the events
            # stay applied: handling them again would only find them stale.
            self._bus.announce_many(announced)
        failed: dict[int, Exception] = {}
        if steps:
            runs = [self._hear_in_order(events, positions, enter, failed) for positions in steps.values()]
            await asyncio.gather(*runs)
        return WindowOutcome(updates, failed)

    async def apply_own(self, event: TaskEvent) -> JobUpdate | None:
        """Apply and announce an event whatever its service: the workflow engine's own events."""
        return (await self._apply_and_announce(event))[1]

    async def _apply_and_announce(self, event: TaskEvent) -> tuple[ApplyOutcome, JobUpdate | None]:
        outcome = await self._registry.apply(event)
        update = self._counted(event, outcome)
        if update is not None:
            self._bus.announce(update)  # not awaited (see accept_many)
        return outcome, update

    def _hears(self, event: TaskEvent, outcome: ApplyOutcome) -> bool:
        """Whether the step listener hears the event. A step's redelivered outcome is dropped by the
        registry as a repeat but must still reach the engine: the replica that applied it may have died
        before advancing (advancing twice is a no-op). A refused (forged) one must not."""
        step_event = event.task_id.startswith(event.global_task_id + ":")
        return self._on_step_event is not None and step_event and outcome.dropped not in REFUSALS

    async def _step_listener(self, event: TaskEvent) -> None:
        if self._on_step_event is not None:
            await self._on_step_event(event)

    async def _hear_in_order(
        self, events: Sequence[TaskEvent], positions: list[int], enter: EventScope, failed: dict[int, Exception]
    ) -> None:
        """One job's step events, in order; from the first that fails on, the rest are failed too (each
        is retried after it, so the engine never hears a job's events out of order)."""
        for n, position in enumerate(positions):
            try:
                with enter(events[position]):
                    await self._step_listener(events[position])
            except Exception as exc:
                failed.update((later, exc) for later in positions[n:])
                return

    def _counted(self, event: TaskEvent, outcome: ApplyOutcome) -> JobUpdate | None:
        """The outcome counted (applied by type, dropped by reason, refusals logged, a job's end timed)."""
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
            if self._stats is not None:
                # The root task's service: the event that ends a job is its root task's (or the engine's).
                self._stats.job_finished(update.tenant_id, event.service, update.status, outcome.created_at)
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


def _no_scope(event: TaskEvent) -> AbstractContextManager[object]:
    return contextlib.nullcontext()
