"""Settling a delivery. A failure here means the channel is gone: the broker redelivers the
message to a consumer on a live channel (at-least-once), so it is logged and not raised."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from aio_pika.abc import AbstractIncomingMessage

from workers.runtime.broker import BROKER_ERRORS

log = logging.getLogger(__name__)


async def _settle(message: AbstractIncomingMessage, settlement: Awaitable[None], what: str) -> bool:
    try:
        await settlement
    except BROKER_ERRORS as exc:
        log.warning("%s of message %s failed (%r); the broker will redeliver it", what, message.message_id, exc)
        return False
    return True


async def ack(message: AbstractIncomingMessage) -> bool:
    return await _settle(message, message.ack(), "ack")


async def requeue(message: AbstractIncomingMessage) -> bool:
    """Give the message back to its queue for another consumer."""
    return await _settle(message, message.nack(requeue=True), "requeue")


async def reject(message: AbstractIncomingMessage) -> bool:
    """Refuse the message for good: the queue's dead-letter exchange parks it."""
    return await _settle(message, message.reject(requeue=False), "reject")
