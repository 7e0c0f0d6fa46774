"""Putting a task back on its way: as its next attempt (after a backoff, or at once), or as it
came when this process never started it.

A delayed attempt waits in the service's delay queue of the nearest tier on `baton.retry`;
its TTL dead-letters it back to `baton.tasks`. Either way the next attempt is published
(confirmed) before the caller acks the current delivery, so a task is never lost in between.
"""

from __future__ import annotations

from typing import Any, Final

import aio_pika
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractIncomingMessage

from protocol.codec import CodecSet
from protocol.envelope import TaskEnvelope
from protocol.topology import RETRY_EXCHANGE, TASKS_EXCHANGE, retry_routing_key, retry_tier
from workers.runtime.broker import AmqpPublisher
from workers.runtime.messages import copy_of

# Headers the broker adds when it dead-letters: copying them would make them grow with every attempt.
_BROKER_DEATH_HEADERS: Final[tuple[str, ...]] = ("x-death", "x-first-death-", "x-last-death-")


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
        await self._amqp.publish(TASKS_EXCHANGE, service, copy_of(message), mandatory=True)

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
