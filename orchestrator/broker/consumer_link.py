"""The event consumer on a connection of its own, started in the background.

aio-pika reconnects a robust connection only once it has connected; the orchestrator must also
start (and report the broker down on /health) while RabbitMQ is not there yet, so the first
connect is retried with backoff in a task and the consumer starts when the broker answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from aio_pika.abc import AbstractRobustConnection

from orchestrator.broker.connect import connect_robust, retry_with_backoff
from orchestrator.broker.event_consumer import ConsumerState, EventConsumer
from orchestrator.errors import BrokerUnavailable

AMQP_CONNECT_TIMEOUT_SECONDS: Final[float] = 5.0
AMQP_RETRY_FIRST_SECONDS: Final[float] = 1.0
AMQP_RETRY_MAX_SECONDS: Final[float] = 30.0

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[AbstractRobustConnection], EventConsumer]


class ConsumerLink:
    def __init__(self, url: str, connection_name: str, make_consumer: ConsumerFactory) -> None:
        self._url = url
        self._connection_name = connection_name
        self._make_consumer = make_consumer
        self._task: asyncio.Task[tuple[AbstractRobustConnection, EventConsumer]] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_and_consume(), name="baton-event-consumer-start")

    @property
    def state(self) -> ConsumerState:
        task = self._task
        if task is None:
            return "stopped"
        if not task.done():
            return "connecting"
        if task.cancelled() or task.exception() is not None:
            return "failed"
        return task.result()[1].state

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        try:
            connection, consumer = await task
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("the event consumer failed to start")
            return
        await consumer.stop()
        await connection.close()

    async def _connect_and_consume(self) -> tuple[AbstractRobustConnection, EventConsumer]:
        connection = await connect_robust_eventually(self._url, self._connection_name)
        consumer = self._make_consumer(connection)
        try:
            await consumer.start()
        except BaseException:
            await connection.close()
            raise
        return connection, consumer


async def connect_robust_eventually(url: str, connection_name: str) -> AbstractRobustConnection:
    """The first connect of a robust connection, retried with backoff until the broker answers."""

    async def attempt() -> AbstractRobustConnection | None:
        try:
            return await connect_robust(url, connection_name, timeout=AMQP_CONNECT_TIMEOUT_SECONDS)
        except BrokerUnavailable as exc:
            log.warning("event consumer: %s; retrying", exc)
            return None

    return await retry_with_backoff(attempt, first_delay=AMQP_RETRY_FIRST_SECONDS, max_delay=AMQP_RETRY_MAX_SECONDS)
