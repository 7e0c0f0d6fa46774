"""Publishing what a worker says: task events, replies to callers, heartbeats.

What each task event costs, and why (the rule: the outcome is never lost and never overtaken):

| event                                  | persistent | confirmed | awaited before                  |
|----------------------------------------|------------|-----------|---------------------------------|
| task_completed, task_failed,           | yes        | yes       | the ledger mark and the ack;    |
| task_cancelled (the outcome)           |            |           | retried over a broker hiccup    |
| task_status_update{retrying}           | yes        | yes       | the ack                         |
| task_status_update{running}, progress  | no         | yes       | the ack only, never the handler |
|                                        |            |           | nor the outcome                 |

- The outcome decides the job, and the message is acked only once it is confirmed: persistent, so it
  outlives a broker restart. The retrying event carries the retry decision (next attempt, delay,
  error) that nothing else records, so it is kept the same way.
- Running and progress are informational: a later event always supersedes them, and losing one to a
  broker restart loses nothing the outcome does not say. NOT_PERSISTENT (delivery_mode 1) keeps them
  out of RabbitMQ's message store: no disk write, no fsync before their confirm. Their confirms are
  still collected before the ack (workers.runtime.advisories), so a broken channel is seen.
- Never overtaken: every event of a process goes out on its one publish channel (WorkerRuntime opens
  one) to the topic exchange, and RabbitMQ keeps the order of one channel's publishes into one queue
  whatever their delivery mode. A running event is queued on the channel before the handler starts
  (or, late, while it runs), the outcome after it returns, so a consumer sees them in that order; a
  running event lost on the way is simply missing, and the registry's seq order drops anything older
  than what it holds.
- With `Worker(batch_outcomes=True)` the outcomes of one loop turn share a message per routing key
  (workers.runtime.outcome_batches): the same persistence and confirm, one message for many jobs.
- Handlers with `track_started=False` publish their running event only should they still run after
  LATE_RUNNING_SECONDS without a progress report (workers.runtime.late_running), the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final

import aio_pika
from aio_pika import DeliveryMode
from aiormq import spec

from protocol.codec import CodecSet
from protocol.control import BREAKERS_KIND, WORKFLOWS_KIND, CircuitBreakerReport, WorkerHeartbeat, WorkflowAnnouncement
from protocol.events import EventType, JobStatus, TaskEvent
from protocol.topology import EVENTS_EXCHANGE, event_routing_key, system_routing_key
from workers.errors import BrokerError
from workers.runtime.broker import AmqpPublisher
from workers.runtime.ids_and_spans import TaskTelemetry
from workers.runtime.outcome_batches import OutcomeBatches

log = logging.getLogger(__name__)

HEARTBEAT_KIND: Final[str] = "worker_heartbeat"
# Outcome publishing rides out a short broker hiccup (the robust connection reconnects in
# seconds) before giving the message back to the queue.
OUTCOME_RETRY_DELAYS: Final[Sequence[float]] = (0.5, 1.0, 2.0, 4.0)


def delivery_mode(event: TaskEvent) -> DeliveryMode:
    """PERSISTENT for an outcome or a retry decision, NOT_PERSISTENT for running and progress."""
    if event.event is EventType.TASK_STATUS_UPDATE and event.status is JobStatus.RUNNING:
        return DeliveryMode.NOT_PERSISTENT
    return DeliveryMode.PERSISTENT


class EventPublisher:
    def __init__(
        self,
        amqp: AmqpPublisher,
        codecs: CodecSet,
        telemetry: TaskTelemetry | None = None,
        *,
        batch_outcomes: bool = False,
    ) -> None:
        self._amqp = amqp
        self._codecs = codecs
        self._telemetry = telemetry or TaskTelemetry("", "")
        # With tracing on, each event keeps its own message: its trace context travels in its headers.
        self._batches = (
            OutcomeBatches(self._send_event, codecs.max_bytes)
            if batch_outcomes and not self._telemetry.tracing.enabled
            else None
        )

    @property
    def codecs(self) -> CodecSet:
        return self._codecs

    def encode(self, event: TaskEvent) -> bytes:
        return self._codecs.encode(event)

    async def publish_event(self, event: TaskEvent, body: bytes | None = None) -> None:
        """Publish on baton.events and wait for the confirm, persistent or not as `delivery_mode` says;
        not mandatory: no subscriber is not an error."""
        properties = self._properties(event, delivery_mode(event))
        headers: dict[str, Any] = {}
        with self._telemetry.event_publish(event, headers):
            properties.headers = headers or None  # the trace context, when tracing is on
            await self._send_event(
                event_routing_key(event.tenant_id, event.service, event.event.value),
                body if body is not None else self.encode(event),
                properties,
            )

    async def _send_event(self, routing_key: str, body: bytes, properties: spec.Basic.Properties) -> None:
        await self._amqp.send(EVENTS_EXCHANGE, routing_key, body, properties, mandatory=False)

    async def _publish_outcome_event(self, event: TaskEvent, body: bytes) -> None:
        if self._batches is None:
            await self.publish_event(event, body)
            return
        routing_key = event_routing_key(event.tenant_id, event.service, event.event.value)
        await self._batches.publish(routing_key, body, self._properties(event, delivery_mode(event)))

    async def publish_reply(self, reply_to: str, event: TaskEvent, body: bytes | None = None) -> None:
        """The outcome, sent straight to the calling worker's reply queue."""
        body = body if body is not None else self.encode(event)
        # NOT_PERSISTENT: the reply queue is exclusive and transient.
        properties = self._properties(event, DeliveryMode.NOT_PERSISTENT)
        await self._amqp.send("", reply_to, body, properties, mandatory=False)

    async def publish_outcome(self, event: TaskEvent, reply_to: str | None, body: bytes | None = None) -> bool:
        """Publish a terminal event (and the reply, if the task has a caller); False when it could not be.

        Only the event's confirm decides: a reply is a courtesy to the caller, who has its own timeout.
        """
        if body is None:
            body = self.encode(event)
        for delay in (*OUTCOME_RETRY_DELAYS, None):
            try:
                await self._publish_outcome_event(event, body)
                break
            except BrokerError as exc:
                if delay is None:
                    log.error("giving up publishing %s of task %s: %s", event.event.value, event.task_id, exc)
                    return False
                log.warning(
                    "publishing %s of task %s failed, retrying in %.1f s: %s",
                    event.event.value,
                    event.task_id,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
        if reply_to:
            try:
                await self.publish_reply(reply_to, event, body)
            except BrokerError as exc:
                log.warning("reply of task %s to %s lost: %s", event.task_id, reply_to, exc)
        return True

    async def publish_heartbeat(self, heartbeat: WorkerHeartbeat) -> None:
        message = aio_pika.Message(
            self._codecs.encode(heartbeat),
            content_type=self._codecs.default.content_type,
            delivery_mode=DeliveryMode.NOT_PERSISTENT,  # a stale heartbeat is worthless after a broker restart
            type=HEARTBEAT_KIND,
        )
        await self._amqp.publish(
            EVENTS_EXCHANGE, system_routing_key(heartbeat.service, HEARTBEAT_KIND), message, mandatory=False
        )

    async def publish_workflows(self, announcement: WorkflowAnnouncement) -> None:
        # Announced again every few heartbeats.
        await self._publish_transient(announcement.service, WORKFLOWS_KIND, self._codecs.encode(announcement))

    async def publish_breakers(self, report: CircuitBreakerReport) -> None:
        # Reported again with every heartbeat.
        await self._publish_transient(report.service, BREAKERS_KIND, self._codecs.encode(report))

    async def _publish_transient(self, service: str, kind: str, body: bytes) -> None:
        """A system message that a later one replaces: not worth keeping over a broker restart."""
        message = aio_pika.Message(
            body,
            content_type=self._codecs.default.content_type,
            delivery_mode=DeliveryMode.NOT_PERSISTENT,
            type=kind,
        )
        await self._amqp.publish(EVENTS_EXCHANGE, system_routing_key(service, kind), message, mandatory=False)

    def _properties(self, event: TaskEvent, delivery_mode: DeliveryMode) -> spec.Basic.Properties:
        return spec.Basic.Properties(
            content_type=self._codecs.default.content_type,
            delivery_mode=delivery_mode.value,
            message_id=event.task_id,
            correlation_id=event.global_task_id,
        )
