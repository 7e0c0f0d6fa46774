"""Child tasks: publishing them with a reply_to, and routing their outcome back to the waiting caller."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aio_pika
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from plumbing.amqp import AMQP_ERRORS
from protocol.codec import CodecSet
from protocol.envelope import TaskEnvelope
from protocol.errors import DecodeError
from protocol.events import EventType, TaskEvent
from protocol.topology import TASKS_EXCHANGE
from workers.errors import BrokerError, ServiceCallError, ServiceCallTimeout
from workers.runtime.broker import AmqpPublisher
from workers.runtime.ids_and_spans import TaskTelemetry

log = logging.getLogger(__name__)


class ReplyRouter:
    """This process's exclusive reply queue; each outcome resolves the future waiting for its task id."""

    def __init__(self, queue_name: str, codecs: CodecSet) -> None:
        self.queue_name = queue_name
        self._codecs = codecs
        self._waiting: dict[str, asyncio.Future[TaskEvent]] = {}

    async def start(self, channel: AbstractChannel) -> None:
        try:
            queue = await channel.declare_queue(self.queue_name, exclusive=True, auto_delete=True)
            await queue.consume(self._on_message, no_ack=True)
        except AMQP_ERRORS as exc:
            raise BrokerError(f"cannot open the reply queue {self.queue_name}: {exc}") from exc

    def expect(self, task_id: str) -> asyncio.Future[TaskEvent]:
        future: asyncio.Future[TaskEvent] = asyncio.get_running_loop().create_future()
        self._waiting[task_id] = future
        return future

    def forget(self, task_id: str) -> None:
        self._waiting.pop(task_id, None)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            event = self._codecs.decode(TaskEvent, message.body, message.content_type)
        except DecodeError as exc:
            log.warning("dropping an undecodable reply: %s", exc)
            return
        future = self._waiting.pop(event.task_id, None)
        if future is None or future.done():
            # A reply after its caller timed out (the caller has republished or given up).
            log.debug("late reply for task %s dropped", event.task_id)
            return
        future.set_result(event)


class ChildTaskCaller:
    """`ctx.call_service`: publish a child envelope to the target service and wait for its reply."""

    def __init__(
        self, amqp: AmqpPublisher, router: ReplyRouter, codecs: CodecSet, telemetry: TaskTelemetry | None = None
    ) -> None:
        self._amqp = amqp
        self._router = router
        self._codecs = codecs
        self._telemetry = telemetry or TaskTelemetry("", "")

    async def call(
        self,
        parent: TaskEnvelope,
        service: str,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        timeout_seconds: float,
        retries: int,
        priority: int | None,
    ) -> Any:
        if timeout_seconds <= 0:
            raise ValueError("timeout must be positive")
        await self._amqp.ensure_service(service)
        attempts = max(0, retries) + 1
        for _ in range(attempts):
            # A fresh child per try: a late answer of an earlier try cannot be mistaken for this one,
            # and the child's own deadline (the timeout) keeps an abandoned try from running late.
            child = parent.child(
                service=service,
                type=job_type,
                payload=dict(payload),
                priority=priority,
                timeout_ms=max(1, int(timeout_seconds * 1000)),
            )
            future = self._router.expect(child.task_id)
            try:
                await self._publish(child)
                event = await asyncio.wait_for(future, timeout_seconds)
            except TimeoutError:
                log.debug("child %s of task %s: no answer in %.1f s", child.task_id, parent.task_id, timeout_seconds)
                continue
            finally:
                self._router.forget(child.task_id)
            return _result_of(event, service, job_type)
        raise ServiceCallTimeout(service, job_type, timeout_seconds, attempts)

    async def _publish(self, child: TaskEnvelope) -> None:
        properties = child.amqp_properties()
        with self._telemetry.task_publish(child, properties["headers"]):
            message = aio_pika.Message(
                self._codecs.encode(child),
                content_type=self._codecs.default.content_type,
                delivery_mode=DeliveryMode.PERSISTENT,
                reply_to=self._router.queue_name,
                **properties,
            )
            await self._amqp.publish(TASKS_EXCHANGE, child.service, message, mandatory=True)


def _result_of(event: TaskEvent, service: str, job_type: str) -> Any:
    if event.event is EventType.TASK_COMPLETED:
        return event.data.get("result")
    if event.event is EventType.TASK_CANCELLED:
        raise ServiceCallError(service, job_type, str(event.data.get("reason", "cancelled")), "Cancelled")
    return_error = str(event.data.get("error", "unknown error"))
    raise ServiceCallError(service, job_type, return_error, str(event.data.get("error_type", "Error")))
