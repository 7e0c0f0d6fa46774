"""Settling a delivery. A failure here means the channel is gone: the broker redelivers the
message to a consumer on a live channel (at-least-once), so it is logged and not raised."""

from __future__ import annotations

import logging

from aio_pika.abc import AbstractIncomingMessage

from workers.runtime.broker import BROKER_ERRORS

log = logging.getLogger(__name__)


async def ack(message: AbstractIncomingMessage) -> bool:
    try:
        await message.ack()
    except BROKER_ERRORS as exc:
        log.warning("ack of message %s failed (%r); the broker will redeliver it", message.message_id, exc)
        return False
    return True


async def requeue(message: AbstractIncomingMessage) -> bool:
    """Give the message back to its queue for another consumer."""
    try:
        await message.nack(requeue=True)
    except BROKER_ERRORS as exc:
        log.warning("requeue of message %s failed (%r); the broker will redeliver it", message.message_id, exc)
        return False
    return True


async def reject(message: AbstractIncomingMessage) -> bool:
    """Refuse the message for good: the queue's dead-letter exchange parks it."""
    try:
        await message.reject(requeue=False)
    except BROKER_ERRORS as exc:
        log.warning("reject of message %s failed (%r); the broker will redeliver it", message.message_id, exc)
        return False
    return True
