"""Deciding what a delivery is: a task this worker can run, or something to park."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from aio_pika.abc import AbstractIncomingMessage

from protocol.codec import Codec, CodecSet
from protocol.envelope import TaskEnvelope
from protocol.errors import DecodeError, MessageTooLarge, ProtocolError, UnsupportedContentType
from protocol.names import TENANT_ID_PATTERN
from workers.sdk import HandlerSpec, Worker

_TENANT_RE = re.compile(TENANT_ID_PATTERN)


class RejectReason(StrEnum):
    """The `x-baton-reason` header of a message this worker dead-lettered."""

    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    MESSAGE_TOO_LARGE = "message_too_large"
    INVALID_ENVELOPE = "invalid_envelope"
    UNKNOWN_JOB_TYPE = "unknown_job_type"
    WRONG_SERVICE = "wrong_service"


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    error: str
    tenant_id: str | None = None


@dataclass(frozen=True)
class Accepted:
    envelope: TaskEnvelope
    handler: HandlerSpec


def classify(message: AbstractIncomingMessage, worker: Worker, codecs: CodecSet) -> Accepted | Rejection:
    try:
        codec = codecs.for_content_type(message.content_type)
    except UnsupportedContentType as exc:
        return Rejection(RejectReason.UNSUPPORTED_CONTENT_TYPE, str(exc))
    try:
        envelope = codecs.decode(TaskEnvelope, message.body, message.content_type)
    except MessageTooLarge as exc:
        return Rejection(RejectReason.MESSAGE_TOO_LARGE, str(exc))
    except DecodeError as exc:
        return Rejection(RejectReason.INVALID_ENVELOPE, str(exc), _tenant_hint(codec, message.body))
    if envelope.service != worker.service:
        return Rejection(
            RejectReason.WRONG_SERVICE,
            f"envelope is for service {envelope.service!r}, this queue is {worker.service!r}",
            envelope.tenant_id,
        )
    handler = worker.handler_for(envelope.type)
    if handler is None:
        return Rejection(
            RejectReason.UNKNOWN_JOB_TYPE,
            f"service {worker.service!r} has no handler for job type {envelope.type!r}; "
            f"it serves {sorted(worker.job_types)}",
            envelope.tenant_id,
        )
    return Accepted(envelope, handler)


def _tenant_hint(codec: Codec, body: bytes) -> str | None:
    """The tenant of a message that decodes but is not a valid envelope, so its owner can see it parked."""
    try:
        obj = codec.loadb(body)
    except ProtocolError:
        return None
    tenant = obj.get("tenant_id") if isinstance(obj, dict) else None
    return tenant if isinstance(tenant, str) and _TENANT_RE.match(tenant) else None
