"""Forwarding a delivery before it is acked: as its next attempt (after a backoff, or at once), as
it came when this process never started it, or to the service's dead letters with why.

Whatever replaces the delivery is published (confirmed, mandatory) before the caller acks it, so
a task is never lost in between; each call raises BrokerError when the broker did not confirm.

A delayed attempt waits in the service's delay queue of the nearest tier on `baton.retry`; its
TTL dead-letters it back to `baton.tasks`. A dead letter goes to `baton.<service>.dead` with the
body and the properties as received (reply_to too), so a replay is the task as it was sent and a
child task's answer still finds its caller.
"""

from __future__ import annotations

from typing import Any, Final

import aio_pika
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractIncomingMessage

from protocol.codec import CodecSet
from protocol.envelope import TaskEnvelope, utc_now
from protocol.topology import (
    ATTEMPTS_HEADER,
    DEAD_AT_HEADER,
    DEAD_LETTER_EXCHANGE,
    ERROR_HEADER,
    ERROR_TYPE_HEADER,
    JOB_ID_HEADER,
    REASON_HEADER,
    RETRY_EXCHANGE,
    TASKS_EXCHANGE,
    TENANT_HEADER,
    retry_routing_key,
    retry_tier,
)
from workers.runtime.attempt import clip
from workers.runtime.broker import AmqpPublisher
from workers.runtime.intake import Rejection

# Headers the broker adds when it dead-letters: copying them would make them grow with every attempt.
_BROKER_DEATH_HEADERS: Final[tuple[str, ...]] = ("x-death", "x-first-death-", "x-last-death-")
_MAX_ERROR_HEADER_CHARS: Final[int] = 1000


class Rescheduler:
    def __init__(self, amqp: AmqpPublisher, codecs: CodecSet) -> None:
        self._amqp = amqp
        self._codecs = codecs

    async def later(self, message: AbstractIncomingMessage, envelope: TaskEnvelope, delay_seconds: float) -> float:
        """Publish the next attempt through the delay queue nearest `delay_seconds`; the real delay (s)."""
        tier_ms = retry_tier(delay_seconds)
        await self._amqp.publish(
            RETRY_EXCHANGE,
            retry_routing_key(envelope.service, tier_ms),
            self._next_attempt(message, envelope),
            mandatory=True,
        )
        return tier_ms / 1000

    async def now(self, message: AbstractIncomingMessage, envelope: TaskEnvelope) -> None:
        """Publish the next attempt straight to the service's work queue."""
        await self._amqp.publish(
            TASKS_EXCHANGE, envelope.service, self._next_attempt(message, envelope), mandatory=True
        )

    async def as_received(self, message: AbstractIncomingMessage, service: str) -> None:
        """Publish the delivery unchanged (body, attempt and properties) to the service's work queue."""
        await self._amqp.publish(TASKS_EXCHANGE, service, _copy_of(message), mandatory=True)

    def _next_attempt(self, message: AbstractIncomingMessage, envelope: TaskEnvelope) -> aio_pika.Message:
        # Same content type as received, so a JSON producer's task stays JSON.
        codec = self._codecs.for_content_type(message.content_type)
        following = envelope.next_attempt()
        properties = following.amqp_properties()
        headers: dict[str, Any] = {
            key: value for key, value in (message.headers or {}).items() if not key.startswith(_BROKER_DEATH_HEADERS)
        }
        headers.update(properties.pop("headers"))  # the next attempt's own tenant and attempt headers
        return aio_pika.Message(
            self._codecs.encode(following, codec),
            headers=headers,
            content_type=codec.content_type,
            delivery_mode=DeliveryMode.PERSISTENT,
            reply_to=message.reply_to,
            **properties,
        )


class DeadLetterer:
    def __init__(self, amqp: AmqpPublisher, service: str) -> None:
        self._amqp = amqp
        self._service = service

    async def park(self, message: AbstractIncomingMessage, rejection: Rejection) -> None:
        """Publish the received message to baton.dlx, with the rejection's reason in its headers."""
        headers: dict[str, Any] = dict(message.headers or {})
        headers[REASON_HEADER] = rejection.reason.value
        headers[ERROR_HEADER] = clip(rejection.error, _MAX_ERROR_HEADER_CHARS)
        headers[DEAD_AT_HEADER] = utc_now().isoformat()
        if rejection.tenant_id is not None:
            headers[TENANT_HEADER] = rejection.tenant_id
        if rejection.envelope is not None:
            headers[TENANT_HEADER] = rejection.envelope.tenant_id
            headers[JOB_ID_HEADER] = rejection.envelope.global_task_id
            headers[ATTEMPTS_HEADER] = rejection.envelope.attempt
            headers[ERROR_TYPE_HEADER] = rejection.error_type
        parked = _copy_of(message, headers=headers, delivery_mode=DeliveryMode.PERSISTENT)
        await self._amqp.publish(DEAD_LETTER_EXCHANGE, self._service, parked, mandatory=True)


def _copy_of(
    message: AbstractIncomingMessage,
    *,
    headers: dict[str, Any] | None = None,
    delivery_mode: DeliveryMode | None = None,
) -> aio_pika.Message:
    """The received message as a new one: body byte for byte and every property a publisher set
    (headers and delivery mode replaced when given). Left out: `user_id`, which the broker checks
    against the publishing connection's user, and `expiration`, a per-message TTL that would start
    over on the copy (and must never drop a parked message; task deadlines live in the envelope)."""
    return aio_pika.Message(
        message.body,
        headers=headers if headers is not None else (dict(message.headers) if message.headers else None),
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=delivery_mode or message.delivery_mode or DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )
