"""Parking a message this worker cannot run in `baton.<service>.dead`, with the reason in headers."""

from __future__ import annotations

from typing import Any, Final

import aio_pika
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractIncomingMessage

from protocol.topology import DEAD_LETTER_EXCHANGE, ERROR_HEADER, REASON_HEADER, TENANT_HEADER
from workers.runtime.broker import AmqpPublisher
from workers.runtime.intake import Rejection

_MAX_ERROR_HEADER_CHARS: Final[int] = 1000


class DeadLetterer:
    def __init__(self, amqp: AmqpPublisher, service: str) -> None:
        self._amqp = amqp
        self._service = service

    async def park(self, message: AbstractIncomingMessage, rejection: Rejection) -> None:
        """Publish the raw body to baton.dlx (confirmed, mandatory); raises BrokerError.

        The caller acks the original only after this returns, so a message is never lost
        between the two queues.
        """
        headers: dict[str, Any] = dict(message.headers or {})
        headers[REASON_HEADER] = rejection.reason.value
        headers[ERROR_HEADER] = rejection.error[:_MAX_ERROR_HEADER_CHARS]
        if rejection.tenant_id is not None:
            headers[TENANT_HEADER] = rejection.tenant_id
        parked = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=DeliveryMode.PERSISTENT,
            priority=message.priority,
            correlation_id=message.correlation_id,
            message_id=message.message_id,
            timestamp=message.timestamp,
            type=message.type,
            app_id=message.app_id,
        )
        await self._amqp.publish(DEAD_LETTER_EXCHANGE, self._service, parked, mandatory=True)
