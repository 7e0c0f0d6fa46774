"""Copying a received message into a new one to publish: same body, same AMQP properties."""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractIncomingMessage


def copy_of(
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
