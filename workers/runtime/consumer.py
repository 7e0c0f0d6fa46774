"""Consuming a service's queue and its tenant lanes with a concurrency limit shared fairly among
tenants (workers.runtime.fair_slots), and draining them on shutdown.

The service queue carries retries, replays, hand-backs and child tasks; each tenant lane
(`baton.<service>.tenant.<tenant>`) the tasks the orchestrator published for that tenant. Every
queue has a consumer of its own, so each gets its own prefetch window (basic.qos is per consumer):
a lone tenant still fills every slot, and a second tenant's lane delivers into this process at once
instead of waiting behind the first one's backlog. Lanes are subscribed at start (read from Redis),
when a `lane_opened` broadcast names one, and on a periodic re-read that covers a missed broadcast.

aiormq runs each delivery callback in a task it cancels when the channel closes; the
callback here only spawns our own task, so a broker blip never cancels a running handler
(its ack then fails, is logged, and the broker redelivers: at-least-once).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Final, Protocol

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, ConsumerTag

from plumbing.amqp import AMQP_ERRORS
from plumbing.cancellation import cancel_and_wait
from protocol.names import is_tenant_id
from protocol.topology import TENANT_HEADER, QueueSpec, lane_queue_spec, service_queues
from workers.errors import BrokerError
from workers.runtime.executions import Executions, StopReason
from workers.runtime.fair_slots import UNATTRIBUTED, FairSlots
from workers.runtime.ids_and_spans import TaskTelemetry
from workers.runtime.runner import TaskRunner
from workers.runtime.settle import Happened, decide, settle

log = logging.getLogger(__name__)

# After the grace period handlers are cancelled; this is how long they get to unwind.
CANCEL_UNWIND_SECONDS: Final[float] = 5.0
DEFAULT_LANE_REFRESH_SECONDS: Final[float] = 15.0


class LaneSource(Protocol):
    """The tenants with a lane of a service (workers.runtime.lanes.LaneDirectory); never raises."""

    async def tenants(self, service: str) -> list[str]: ...


class TaskConsumer:
    def __init__(
        self,
        service: str,
        runner: TaskRunner,
        executions: Executions,
        slots: FairSlots,
        lanes: LaneSource,
        *,
        lane_refresh_seconds: float = DEFAULT_LANE_REFRESH_SECONDS,
        telemetry: TaskTelemetry | None = None,
    ) -> None:
        self._service = service
        self._telemetry = telemetry or TaskTelemetry(service, "")
        self._runner = runner
        self._executions = executions
        self._slots = slots
        self._lanes = lanes
        self._lane_refresh_seconds = lane_refresh_seconds
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._channel: AbstractChannel | None = None
        self._consumers: list[tuple[AbstractQueue, ConsumerTag]] = []
        self._open_lanes: set[str] = set()
        self._refresher: asyncio.Task[None] | None = None

    @property
    def queue_name(self) -> str:
        return service_queues(self._service)[0].name

    @property
    def lanes(self) -> frozenset[str]:
        """The tenants whose lane this process consumes."""
        return frozenset(self._open_lanes)

    @property
    def unacked(self) -> int:
        """Deliveries received and not yet settled (waiting for a slot, running, or being settled)."""
        return len(self._tasks)

    @property
    def consumed_queues(self) -> int:
        """The queues this process consumes, each with a prefetch window of its own."""
        return len(self._consumers)

    async def start(self, channel: AbstractChannel) -> None:
        self._channel = channel
        await self._consume(service_queues(self._service)[0], None)
        await self._open_listed_lanes()
        self._refresher = asyncio.create_task(self._refresh_lanes(), name=f"lanes:{self._service}")

    async def open_lane(self, tenant_id: str) -> None:
        """Consume a tenant's lane (declared with full arguments first); a lane consumed already is left
        alone. A lane that cannot be subscribed now is tried again at the next re-read."""
        if tenant_id in self._open_lanes or self._stopping or self._channel is None:
            return
        self._open_lanes.add(tenant_id)  # before the await: a broadcast and a re-read racing subscribe once
        try:
            await self._consume(lane_queue_spec(self._service, tenant_id), tenant_id)
        except BrokerError as exc:
            self._open_lanes.discard(tenant_id)
            log.warning("%s", exc)
            return
        log.info("consuming the lane of tenant %s on %s", tenant_id, self._service)

    async def _consume(self, spec: QueueSpec, lane_tenant: str | None) -> None:
        assert self._channel is not None
        try:
            # Declared with the full arguments (not passively), so a robust reconnect re-creates it as well.
            queue = await self._channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
            for binding in spec.bindings:
                await queue.bind(binding.exchange, routing_key=binding.routing_key)
            tag = await queue.consume(functools.partial(self._on_message, lane_tenant))
        except AMQP_ERRORS as exc:
            raise BrokerError(f"cannot consume {spec.name}: {exc}") from exc
        self._consumers.append((queue, tag))
        if self._stopping:  # a lane subscribed while `stop` cancelled the others
            await self._cancel_consumers()

    async def _open_listed_lanes(self) -> None:
        for tenant in await self._lanes.tenants(self._service):
            await self.open_lane(tenant)

    async def _refresh_lanes(self) -> None:
        while True:
            await asyncio.sleep(self._lane_refresh_seconds)
            try:
                await self._open_listed_lanes()
            except Exception:
                log.exception("re-reading the lanes of %s failed", self._service)  # the next round still comes

    async def _on_message(self, lane_tenant: str | None, message: AbstractIncomingMessage) -> None:
        # The broker's consumer timeout runs from delivery, so the time limit budget does too.
        received_at = time.monotonic()
        task = asyncio.create_task(
            self._handle(message, received_at, _tenant_of(message, lane_tenant)), name=f"task:{message.message_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: AbstractIncomingMessage, received_at: float, tenant: str) -> None:
        if not await self._slots.acquire(tenant, message.priority or 0):
            # Delivered but never started: another process takes it, as the same attempt.
            await self._runner.hand_back(message)
            return
        try:
            with self._telemetry.delivery(message):
                await self._runner.process(message, received_at)
        except Exception as exc:
            # A bug in the pipeline (not the handler, whose errors are outcomes): log it and park the
            # message rather than requeue it into a hot loop; the worker keeps serving.
            log.exception("processing message %s failed", message.message_id)
            if not message.processed:
                await self._quarantine(message, exc)
        finally:
            self._slots.release(tenant)

    async def _quarantine(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        try:
            await self._runner.quarantine(message, exc)
        except Exception:
            log.exception("parking message %s failed; rejecting it", message.message_id)
            if not message.processed:
                await settle(message, decide(Happened.PARK_FAILED))

    async def stop(self, grace_seconds: float) -> None:
        """Stop taking messages, let running handlers finish within the grace period, then cancel
        the rest (their messages are requeued: an interrupted attempt). Deliveries still waiting
        for a slot are handed back unchanged, as they never started."""
        self._stopping = True
        # The consumers' cancel goes out first (the runtime hands back flow-limited waiters meanwhile);
        # a lane the re-read subscribes after this is cancelled by `_consume` itself.
        await self._cancel_consumers()
        if self._refresher is not None:
            await cancel_and_wait(self._refresher)
        self._slots.stop()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        if not pending:
            return
        log.warning("grace period of %.1f s over: requeueing %d running task(s)", grace_seconds, len(pending))
        self._executions.stop_all(StopReason.SHUTDOWN, "worker shutting down")
        _, stuck = await asyncio.wait(pending, timeout=CANCEL_UNWIND_SECONDS)
        if stuck:
            # Handlers that swallow cancellation: closing the channel returns their messages.
            log.error("%d task(s) ignored cancellation; their messages return when the channel closes", len(stuck))
            for task in stuck:
                task.cancel()

    async def _cancel_consumers(self) -> None:
        consumers, self._consumers = self._consumers, []
        for queue, tag in consumers:
            try:
                await queue.cancel(tag)
            except AMQP_ERRORS as exc:
                log.warning("cancelling the consumer of %s failed: %s", queue.name, exc)


def _tenant_of(message: AbstractIncomingMessage, lane_tenant: str | None) -> str:
    """The tenant whose turn a delivery waits for: its tenant header (Baton's publishers set it on every
    task, so a retry in the service queue counts against its tenant as well), else its lane's tenant."""
    claimed = (message.headers or {}).get(TENANT_HEADER)
    if is_tenant_id(claimed):
        return claimed
    return lane_tenant or UNATTRIBUTED
