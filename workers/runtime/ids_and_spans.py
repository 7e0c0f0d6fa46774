"""What a worker's logs and traces know of the task at hand: the context ids of `plumbing.log_context`
and the spans of `plumbing.tracing`, set around a delivery, a handler run and an event's publish.

A delivery's ids come from its AMQP properties (message_id is the task id, correlation_id the job id,
the tenant header), so they are known before the body is decoded and even when it cannot be; a
handler's come from the decoded envelope.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from plumbing.log_context import log_context
from plumbing.task_spans import MESSAGING_SYSTEM, event_attributes, task_attributes
from plumbing.tracing import AttributeValue, NoTracing, Tracing
from protocol.envelope import TaskEnvelope
from protocol.events import TaskEvent
from protocol.topology import ATTEMPTS_HEADER, EVENTS_EXCHANGE, TASKS_EXCHANGE, TENANT_HEADER


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class TaskTelemetry:
    """The ids and spans of one worker process's task handling."""

    def __init__(self, service: str, worker_id: str, tracing: Tracing | None = None) -> None:
        self._service = service
        self._worker_id = worker_id
        self.tracing: Tracing = tracing or NoTracing()

    @contextmanager
    def delivery(self, message: AbstractIncomingMessage) -> Iterator[None]:
        """Around the processing of one delivery: a consumer span whose parent is the publisher's."""
        headers = message.headers or {}
        tenant, job, task = _text(headers.get(TENANT_HEADER)), _text(message.correlation_id), _text(message.message_id)
        with log_context(service=self._service, worker_id=self._worker_id, tenant_id=tenant, job_id=job, task_id=task):
            if not self.tracing.enabled:
                yield
                return
            attributes: dict[str, AttributeValue] = {**MESSAGING_SYSTEM, "baton.service": self._service}
            for name, value in (("baton.tenant_id", tenant), ("baton.job_id", job), ("baton.task_id", task)):
                if value is not None:
                    attributes[name] = value
            if _text(message.type):
                attributes["baton.type"] = str(message.type)
            attempt = headers.get(ATTEMPTS_HEADER)
            if isinstance(attempt, int):
                attributes["baton.attempt"] = attempt
            with self.tracing.span(f"process {self._service}", kind="consumer", attributes=attributes, parent=headers):
                yield

    @contextmanager
    def handler(self, envelope: TaskEnvelope) -> Iterator[None]:
        """Around one run of a task's handler (its progress events are the span's children)."""
        with log_context(tenant_id=envelope.tenant_id, job_id=envelope.global_task_id, task_id=envelope.task_id):
            if not self.tracing.enabled:
                yield
                return
            with self.tracing.span(f"handle {envelope.type}", attributes=task_attributes(envelope)):
                yield

    @contextmanager
    def event_publish(self, event: TaskEvent, headers: MutableMapping[str, Any]) -> Iterator[None]:
        """Around the publish of a task event: a producer span, its context put into `headers`."""
        if not self.tracing.enabled:
            yield
            return
        attributes = {**MESSAGING_SYSTEM, "messaging.destination.name": EVENTS_EXCHANGE, **event_attributes(event)}
        with self.tracing.span(f"publish {EVENTS_EXCHANGE}", kind="producer", attributes=attributes):
            self.tracing.inject(headers)
            yield

    @contextmanager
    def task_publish(self, envelope: TaskEnvelope, headers: MutableMapping[str, Any]) -> Iterator[None]:
        """Around the publish of a child task (`ctx.call_service`): a producer span, its context put
        into `headers`, so the child's processing joins the caller's trace."""
        if not self.tracing.enabled:
            yield
            return
        attributes = {**MESSAGING_SYSTEM, "messaging.destination.name": TASKS_EXCHANGE, **task_attributes(envelope)}
        with self.tracing.span(f"publish {TASKS_EXCHANGE}", kind="producer", attributes=attributes):
            self.tracing.inject(headers)
            yield
