"""EventConsumer: task events and worker heartbeats from RabbitMQ into the registry and the bus,
workers' workflow announcements (`_system.<service>.workflows`) to the declared workflows, and their
circuit breaker reports (`_system.<service>.circuit_breakers`) to the directory.

All replicas share one durable queue, so each event is applied once; the applied update is
published on the UpdateBus for every replica's clients. Task events are taken by window: every
delivery waiting when the consumer gets to run (at most the prefetch, and MAX_WINDOW_EVENTS events),
decoded, applied in delivery order in one registry call (one Redis round trip), their updates
announced as one bus message. One window runs at a time, so a job's events reach the registry in the
order they were delivered.
A batch message (`protocol.event_batch`) carries several events; they take its place in the window,
in the order packed, and each is checked, applied and refused as if it had come alone.
Heartbeats, announcements and breaker reports go their own way, one at a time.

Acknowledgement rules: a window's events are acked once their outcome is recorded (applied or
dropped as late/duplicate) and the workflow engine heard its steps' events, with one `multiple`
ack where that settles exactly them (`settlements`); bytes that are not a valid message are acked
and counted, since no retry can fix them (a batch's bad items too, its good ones applied); while
Redis is unreachable the window is held for a short delay and then tried again, ahead of the
deliveries that arrived behind it, so nothing is lost, a job's events are still applied in their
order, and the consumer never spins. It is held here, not requeued: a requeued window went back to
the queue while later events of its jobs were being delivered, and those overtook it (and dropped it
as stale). A message is settled whole, once: a batch is acked when all its events are recorded, and
retried whole when the workflow engine failed on any of them. What a replica holds when it goes away
(its channel closes) the broker redelivers, in queue order.

Anybody allowed to publish on the events exchange could forge an event. RabbitMQ's topic
permissions can tie a publisher to routing keys (its tenant's, its service's), so an event is
believed only when its body says what its routing key says: `<tenant_id>.<service>.<event>`.
The registry refuses what the job's own workers could not have sent (registry.REFUSALS). Refused
events are acked (no retry makes them true), counted by reason and logged once per burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    ConsumerTag,
)
from aio_pika.exceptions import AMQPError

from orchestrator.broker.event_ports import EventSink, WorkflowAnnouncements
from orchestrator.broker.event_windows import next_window
from orchestrator.broker.settlements import Settlements
from orchestrator.errors import RegistryError
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.store.directory import ServiceDirectory
from plumbing.log_context import log_context
from plumbing.task_spans import MESSAGING_SYSTEM, event_attributes
from plumbing.tracing import NoTracing, Tracing
from protocol.codec import CodecSet
from protocol.control import (
    BREAKERS_KIND,
    WORKFLOWS_KIND,
    CircuitBreakerReport,
    WorkerHeartbeat,
    WorkflowAnnouncement,
)
from protocol.errors import DecodeError
from protocol.event_batch import is_event_batch, unpack_event_batch
from protocol.events import TaskEvent
from protocol.topology import (
    EVENTS_EXCHANGE,
    ORCHESTRATOR_EVENTS_QUEUE,
    ORCHESTRATOR_QUEUES,
    SYSTEM_ROUTING_PREFIX,
    Binding,
    QueueSpec,
    declare_exchanges,
    event_routing_key,
    system_routing_key,
)

log = logging.getLogger(__name__)

DEFAULT_RETRY_DELAY_SECONDS: Final[float] = 1.0
_STOP_TIMEOUT_SECONDS: Final[float] = 5.0
# Of that, what the window under way has to finish (one Redis round trip, milliseconds when Redis is well).
_WINDOW_FINISH_SECONDS: Final[float] = 2.0

_ServiceMessage = TypeVar("_ServiceMessage", WorkflowAnnouncement, CircuitBreakerReport)

ConsumerState = Literal["connecting", "consuming", "reconnecting", "failed", "stopped"]


def events_queue(name: str, exchange: str, routing_keys: tuple[str, ...]) -> QueueSpec:
    """The shared orchestrator queue, or (tests, tools) a private one with its own bindings."""
    if name == ORCHESTRATOR_EVENTS_QUEUE and exchange == EVENTS_EXCHANGE:
        return ORCHESTRATOR_QUEUES[0]
    return QueueSpec(name, {"x-queue-type": "classic"}, tuple(Binding(exchange, key) for key in routing_keys))


@dataclass(frozen=True, slots=True)
class _Believed:
    """A window's believed events, each one's message (a batch's repeated), the messages to settle with
    them (each once), and the messages to ack as they are: undecodable or forged (counted)."""

    events: list[TaskEvent]
    carriers: list[AbstractIncomingMessage]
    messages: list[AbstractIncomingMessage]
    settled: list[AbstractIncomingMessage]


class EventConsumer:
    def __init__(
        self,
        connection: AbstractRobustConnection,
        sink: EventSink,
        directory: ServiceDirectory,
        metrics: OrchestratorMetrics,
        codecs: CodecSet,
        prefetch: int = 256,
        *,
        queue_name: str = ORCHESTRATOR_EVENTS_QUEUE,
        exchange: str = EVENTS_EXCHANGE,
        routing_keys: tuple[str, ...] = ("#",),
        retry_delay: float = DEFAULT_RETRY_DELAY_SECONDS,
        workflows: WorkflowAnnouncements | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._connection = connection
        self._tracing: Tracing = tracing or NoTracing()
        self._directory = directory
        self._metrics = metrics
        self._codecs = codecs
        self._prefetch = prefetch
        self._exchange = exchange
        self._queue = events_queue(queue_name, exchange, routing_keys)
        self._retry_delay = retry_delay
        self._sink = sink
        self._workflows = workflows
        self._channel: AbstractChannel | None = None
        self._consuming: tuple[AbstractQueue, ConsumerTag] | None = None
        # Task events wait here (at most `prefetch`) for the next window; the others in their own queue.
        self._waiting: list[AbstractIncomingMessage] = []
        self._arrived = asyncio.Event()
        self._system: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._settlements = Settlements()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False  # the window under way is the last

    async def start(self) -> None:
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        await declare_exchanges(channel)
        if self._exchange != EVENTS_EXCHANGE:
            await channel.declare_exchange(self._exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        spec = self._queue
        # Declared here rather than via protocol.declare_queues: the robust channel must own the
        # queue object to restore its bindings and consumer after a reconnect.
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        for binding in spec.bindings:
            await queue.bind(binding.exchange, routing_key=binding.routing_key)
        self._channel = channel
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._take_windows(), name="baton-event-consumer-windows"),
            asyncio.create_task(self._take_system_messages(), name="baton-event-consumer-system"),
        ]
        self._consuming = (queue, await queue.consume(self._receive))

    @property
    def state(self) -> ConsumerState:
        """consuming, or reconnecting while the robust connection restores the channel and consumer."""
        channel = self._channel
        if self._consuming is None or channel is None:
            return "stopped"
        if self._connection.connected.is_set() and not channel.is_closed:
            return "consuming"
        return "reconnecting"

    async def stop(self) -> None:
        """Stop consuming; the window under way is finished, and what waits behind it (unsettled)
        goes back to the queue when the channel closes."""
        consuming, self._consuming = self._consuming, None
        tasks, self._tasks = self._tasks, []
        channel, self._channel = self._channel, None
        with contextlib.suppress(AMQPError, aio_pika.exceptions.ChannelInvalidStateError):
            if consuming is not None:
                await consuming[0].cancel(consuming[1])
        if tasks:
            windows, system = tasks
            # Not cancelled: Redis may already have applied the window, and its events would come
            # back stale after a requeue, their updates never announced (a job's end no live client
            # hears of). A system message is simply handled again.
            self._stopping = True
            self._arrived.set()
            system.cancel()
            # Bounded: shutdown must not hang on a window stuck in a dependency call.
            _, pending = await asyncio.wait([windows], timeout=_WINDOW_FINISH_SECONDS)
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=_STOP_TIMEOUT_SECONDS - _WINDOW_FINISH_SECONDS)
            if pending:
                log.warning("the event consumer did not stop within %.0f s", _STOP_TIMEOUT_SECONDS)
        with contextlib.suppress(AMQPError, aio_pika.exceptions.ChannelInvalidStateError):
            if channel is not None:
                await channel.close()
        self._waiting, self._system, self._settlements = [], asyncio.Queue(), Settlements()

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        self._settlements.delivered(message)
        if (message.routing_key or "").startswith(SYSTEM_ROUTING_PREFIX + "."):
            self._system.put_nowait(message)
        else:
            self._waiting.append(message)
            self._arrived.set()

    async def _take_windows(self) -> None:
        while not self._stopping:
            await self._arrived.wait()
            if self._stopping:
                return
            self._arrived.clear()
            window, self._waiting = next_window(self._waiting)
            if self._waiting:
                self._arrived.set()
            try:
                await self._handle_window(window)
            except Exception:
                # A bug must not stop the consumer, nor lose the window (what was settled stays so).
                log.exception("unexpected error handling %d message(s); retrying", len(window))
                await self._retry_later(window)

    async def _handle_window(self, window: list[AbstractIncomingMessage]) -> None:
        believed = self._believed(window)
        events, carriers, messages, settled = believed.events, believed.carriers, believed.messages, believed.settled
        if not events:
            await self._settlements.ack(settled)
            return
        carrier_of = {id(event): message for event, message in zip(events, carriers, strict=True)}
        try:
            outcome = await self._sink.accept_many(events, lambda event: self._applying(event, carrier_of[id(event)]))
        except Exception as exc:
            if isinstance(exc, RegistryError):
                log.warning("Redis failed (%s); retrying %d event(s) in %.1fs", exc, len(events), self._retry_delay)
            else:  # a bug must not lose the events either; the delay keeps a poison message from spinning
                log.exception("unexpected error handling %d event(s); retrying", len(events))
            await self._settlements.ack(settled)
            await self._retry_later(messages)
            return
        if not outcome.failed:
            await self._settlements.ack(settled + messages)
            return
        # A message is retried whole when any of its events failed. Its other events, applied now, are then
        # dropped by the registry as repeats (stale, or task/job terminal: never refused, never counted as
        # applied or announced again) and only heard again by the workflow engine, for which that is a no-op.
        retried = {carriers[n] for n in outcome.failed}
        await self._settlements.ack(settled + [m for m in messages if m not in retried])
        for n, error in sorted(outcome.failed.items()):
            log.warning("the workflow engine failed on %s (%s); retrying", events[n].task_id, error)
        await self._retry_later([m for m in messages if m in retried])

    def _believed(self, window: list[AbstractIncomingMessage]) -> _Believed:
        """The window's events that say what their routing key says, with their messages."""
        events: list[TaskEvent] = []
        carriers: list[AbstractIncomingMessage] = []
        settled: list[AbstractIncomingMessage] = []
        batched = False
        for message in window:
            if is_event_batch(message.headers):
                batched = True
                unpacked = self._batch_believed(message)
                if unpacked:
                    events += unpacked
                    carriers += [message] * len(unpacked)
                else:
                    settled.append(message)
                continue
            try:
                event = self._codecs.decode(TaskEvent, message.body, message.content_type)
            except DecodeError as exc:
                self._undecodable(message, exc)
                settled.append(message)
                continue
            if message.routing_key == event_routing_key(event.tenant_id, event.service, event.event.value):
                events.append(event)
                carriers.append(message)
            else:
                self._refuse_forged(event, message)
                settled.append(message)
        # One entry per event; a message is settled once (Settlements must never see one twice). Single
        # events, the hot path, carry one each: only a window with a batch pays for the dedupe.
        messages = list(dict.fromkeys(carriers)) if batched else carriers
        return _Believed(events, carriers, messages, settled)

    def _batch_believed(self, message: AbstractIncomingMessage) -> list[TaskEvent]:
        """A batch message's events that say what its routing key says. Bad bytes (the body, an item) and
        forged items are counted and dropped, the rest believed: no retry can fix them."""
        try:
            items = unpack_event_batch(message.body, self._codecs.max_bytes)
        except DecodeError as exc:
            self._undecodable(message, exc)
            return []
        believed: list[TaskEvent] = []
        for item in items:
            try:
                event = self._codecs.decode(TaskEvent, item, message.content_type)
            except DecodeError as exc:
                self._undecodable(message, exc)
                continue
            if message.routing_key == event_routing_key(event.tenant_id, event.service, event.event.value):
                believed.append(event)
            else:
                self._refuse_forged(event, message)
        return believed

    def _undecodable(self, message: AbstractIncomingMessage, exc: DecodeError) -> None:
        log.warning("dropping an undecodable message (routing key %s): %s", message.routing_key, exc)
        self._metrics.events_dropped.labels(reason="undecodable").inc()

    def _refuse_forged(self, event: TaskEvent, message: AbstractIncomingMessage) -> None:
        with self._applying(event, message):
            self._sink.refuse("routing_mismatch", event, message.routing_key)

    async def _take_system_messages(self) -> None:
        while True:
            message = await self._system.get()
            try:
                await self._handle_system_message(message)
            except DecodeError as exc:
                self._undecodable(message, exc)
            except Exception as exc:
                # Redis failed, or a bug: held, then requeued (the delay keeps it from spinning).
                log.warning("could not handle %s (%s); requeueing", message.routing_key, exc, exc_info=True)
                await asyncio.sleep(self._retry_delay)
                await self._settlements.nack((message,))
                continue
            await self._settlements.ack((message,))

    async def _handle_system_message(self, message: AbstractIncomingMessage) -> None:
        routing_key = message.routing_key or ""
        if routing_key.endswith("." + WORKFLOWS_KIND):
            await self._announced(message)
        elif routing_key.endswith("." + BREAKERS_KIND):
            await self._breakers_reported(message)
        else:
            heartbeat = self._codecs.decode(WorkerHeartbeat, message.body, message.content_type)
            await self._directory.record_heartbeat(heartbeat)

    @contextlib.contextmanager
    def _applying(self, event: TaskEvent, message: AbstractIncomingMessage) -> Iterator[None]:
        """The event's ids in the log records, and (tracing on) its span: the child of the worker's publish span."""
        with log_context(tenant_id=event.tenant_id, job_id=event.global_task_id, task_id=event.task_id):
            if not self._tracing.enabled:
                yield
                return
            with self._tracing.span(
                f"apply {event.event.value}",
                kind="consumer",
                attributes={**MESSAGING_SYSTEM, **event_attributes(event)},
                parent=message.headers or {},
            ):
                yield

    async def _announced(self, message: AbstractIncomingMessage) -> None:
        announcement = self._system_message(WorkflowAnnouncement, WORKFLOWS_KIND, message)
        if announcement is not None and self._workflows is not None:
            await self._workflows.record(announcement)

    async def _breakers_reported(self, message: AbstractIncomingMessage) -> None:
        report = self._system_message(CircuitBreakerReport, BREAKERS_KIND, message)
        if report is not None:
            await self._directory.record_breakers(report)

    def _system_message(
        self, model: type[_ServiceMessage], kind: str, message: AbstractIncomingMessage
    ) -> _ServiceMessage | None:
        """A worker's announcement or report, believed only under its own service's routing key."""
        decoded = self._codecs.decode(model, message.body, message.content_type)
        if message.routing_key == system_routing_key(decoded.service, kind):
            return decoded
        log.warning("dropping a %s message of service %r sent as %s", kind, decoded.service, message.routing_key)
        self._metrics.events_dropped.labels(reason="routing_mismatch").inc()
        return None

    async def _retry_later(self, messages: list[AbstractIncomingMessage]) -> None:
        """After the retry delay, those of the messages still unsettled head the next window, ahead of the
        events that arrived behind them meanwhile (a closed channel's are left to the broker's redelivery)."""
        await asyncio.sleep(self._retry_delay)
        self._waiting[:0] = self._settlements.pending(messages)
        self._arrived.set()
