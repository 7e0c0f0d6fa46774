"""Deciding what a delivery is: a task this worker can run, or something to park."""

from __future__ import annotations

from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage

from protocol.codec import Codec, CodecSet
from protocol.envelope import TaskEnvelope
from protocol.errors import DecodeError, MessageTooLarge, ProtocolError, UnsupportedContentType
from protocol.names import is_tenant_id
from protocol.topology import DeadLetterReason
from workers.runtime.task_identity import identified_task
from workers.sdk import HandlerSpec, Worker


@dataclass(frozen=True)
class Rejection:
    reason: DeadLetterReason
    error: str
    tenant_id: str | None = None
    # The task, when known: decoded from the body, or named by its properties when the body cannot
    # be read (task_identity). Its job is then failed.
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
