"""Intake: what a delivery is, a task this worker can run or something to park.

A message whose body cannot be read (too large, undecodable, foreign content type) may still name
its task by its AMQP properties: Baton's publishers set message_id (task id), correlation_id (job
id) and the tenant and attempt headers on every task (TaskEnvelope.amqp_properties). With all four
present and well formed, the refused task's job can be failed at once instead of staying queued
until the sweeper gives up on it.

Headers are claims: anyone who can publish to the work queue can write them. That gives nothing
away: the failure event they lead to is applied only to a job the registry holds under that
tenant, with that task, for this service; and whoever could forge the headers could publish that
event to the events exchange directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypeGuard

from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from protocol.codec import Codec, CodecSet
from protocol.envelope import TaskEnvelope
from protocol.errors import DecodeError, MessageTooLarge, ProtocolError, UnsupportedContentType
from protocol.names import is_job_type, is_tenant_id
from protocol.priorities import DEFAULT_PRIORITY, MAX_PRIORITY
from protocol.topology import ATTEMPTS_HEADER, TENANT_HEADER, DeadLetterReason
from workers.sdk import HandlerSpec, Worker

UNREAD_TYPE: Final[str] = "unread"  # the job type of a task known only by its properties


@dataclass(frozen=True)
class Rejection:
    reason: DeadLetterReason
    error: str
    tenant_id: str | None = None
    # The task, when known: decoded from the body, or named by its properties when the body cannot
    # be read (identified_task). Its job is then failed.
    envelope: TaskEnvelope | None = None
    last_error_type: str | None = None  # of the last attempt's failure, when there was one

    @property
    def error_type(self) -> str:
        """The last attempt's error type, else the reason in CamelCase (UnknownJobType, ...)."""
        if self.last_error_type is not None:
            return self.last_error_type
        return "".join(word.title() for word in self.reason.value.split("_"))


@dataclass(frozen=True)
class Accepted:
    envelope: TaskEnvelope
    handler: HandlerSpec


def classify(message: AbstractIncomingMessage, worker: Worker, codecs: CodecSet) -> Accepted | Rejection:
    try:
        codec = codecs.for_content_type(message.content_type)
    except UnsupportedContentType as exc:
        return _unread(DeadLetterReason.UNSUPPORTED_CONTENT_TYPE, str(exc), message, worker)
    try:
        envelope = codecs.decode(TaskEnvelope, message.body, message.content_type)
    except MessageTooLarge as exc:
        return _unread(DeadLetterReason.MESSAGE_TOO_LARGE, str(exc), message, worker)
    except DecodeError as exc:
        return _unread(DeadLetterReason.INVALID_ENVELOPE, str(exc), message, worker, codec)
    if envelope.service != worker.service:
        return Rejection(
            DeadLetterReason.WRONG_SERVICE,
            f"envelope is for service {envelope.service!r}, this queue is {worker.service!r}",
            envelope.tenant_id,
            envelope,
        )
    handler = worker.handler_for(envelope.type)
    if handler is None:
        return Rejection(
            DeadLetterReason.UNKNOWN_JOB_TYPE,
            f"service {worker.service!r} has no handler for job type {envelope.type!r}; "
            f"it serves {sorted(worker.job_types)}",
            envelope.tenant_id,
            envelope,
        )
    return Accepted(envelope, handler)


def _unread(
    reason: DeadLetterReason, error: str, message: AbstractIncomingMessage, worker: Worker, codec: Codec | None = None
) -> Rejection:
    """A body that is not a task envelope: the task named by the publisher's properties when they do,
    else only a tenant hint from a body that decodes (either way a claim, checked before it is believed)."""
    task = identified_task(message, worker.service)
    if task is not None:
        return Rejection(reason, error, task.tenant_id, task)
    return Rejection(reason, error, _tenant_hint(codec, message.body) if codec is not None else None)


def _tenant_hint(codec: Codec, body: bytes) -> str | None:
    """The tenant of a message that decodes but is not a valid envelope, so its owner can see it parked."""
    try:
        obj = codec.loadb(body)
    except ProtocolError:
        return None
    tenant = obj.get("tenant_id") if isinstance(obj, dict) else None
    return tenant if is_tenant_id(tenant) else None


def identified_task(message: AbstractIncomingMessage, service: str) -> TaskEnvelope | None:
    """The task as far as its properties tell (no payload), or None when they do not name it whole."""
    headers = message.headers or {}
    tenant_id, attempt = headers.get(TENANT_HEADER), headers.get(ATTEMPTS_HEADER)
    if not (is_tenant_id(tenant_id) and _is_attempt(attempt) and message.message_id and message.correlation_id):
        return None
    priority = message.priority if message.priority is not None and 0 <= message.priority <= MAX_PRIORITY else None
    try:
        return TaskEnvelope(
            task_id=message.message_id,
            global_task_id=message.correlation_id,
            tenant_id=tenant_id,
            type=message.type if is_job_type(message.type) else UNREAD_TYPE,
            service=service,
            priority=DEFAULT_PRIORITY if priority is None else priority,
            attempt=attempt,
        )
    except ValidationError:
        return None  # an id too long to be one of ours


def _is_attempt(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
