"""Parking a message in `baton.<service>.dead`, with why in its headers.

The body and the properties are kept as received (reply_to too), so a replay is the task as it
was sent and a child task's answer still finds its caller.
"""

from __future__ import annotations

from typing import Any, Final

from aio_pika import DeliveryMode
from aio_pika.abc import AbstractIncomingMessage

from protocol.envelope import utc_now
from protocol.topology import (
    ATTEMPTS_HEADER,
    DEAD_AT_HEADER,
    DEAD_LETTER_EXCHANGE,
    ERROR_HEADER,
    ERROR_TYPE_HEADER,
    JOB_ID_HEADER,
    REASON_HEADER,
    TENANT_HEADER,
)
from workers.runtime.broker import AmqpPublisher
from workers.runtime.failures import clip
from workers.runtime.intake import Rejection
from workers.runtime.messages import copy_of

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
        headers[ERROR_HEADER] = clip(rejection.error, _MAX_ERROR_HEADER_CHARS)
        headers[DEAD_AT_HEADER] = utc_now().isoformat()
        if rejection.tenant_id is not None:
            headers[TENANT_HEADER] = rejection.tenant_id
        if rejection.envelope is not None:
            headers[TENANT_HEADER] = rejection.envelope.tenant_id
            headers[JOB_ID_HEADER] = rejection.envelope.global_task_id
            headers[ATTEMPTS_HEADER] = rejection.envelope.attempt
            headers[ERROR_TYPE_HEADER] = rejection.error_type
        parked = copy_of(message, headers=headers, delivery_mode=DeliveryMode.PERSISTENT)
        await self._amqp.publish(DEAD_LETTER_EXCHANGE, self._service, parked, mandatory=True)
