"""The AMQP boundary: connecting, and publishing with confirms.

aio-pika and aiormq errors stop here and become BrokerError / UnroutableError, so the rest
of the runtime handles one error tree. The socket sends the frames written in one loop turn as
one write (plumbing.coalescing): events, acks and replies of concurrent tasks share sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.connection import make_url
from aiormq import spec
from aiormq.connection import TCPTransportFactory, TLSTransportFactory
from yarl import URL

from plumbing.coalescing import coalesce_writes
from protocol.topology import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    RETRY_EXCHANGE,
    TASKS_EXCHANGE,
    declare_service,
)
from workers.errors import BrokerError, UnroutableError

log = logging.getLogger(__name__)

# What a broker operation raises when the link or the channel is gone: aiormq's error tree,
# its channel-state RuntimeError, and socket errors/timeouts (TimeoutError is an OSError).
BROKER_ERRORS: Final = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError, OSError)

PUBLISH_TIMEOUT_SECONDS: Final[float] = 10.0
_EXCHANGES: Final = frozenset({"", TASKS_EXCHANGE, RETRY_EXCHANGE, EVENTS_EXCHANGE, DEAD_LETTER_EXCHANGE})


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class _CoalescingTransportFactory(aiormq.TransportFactory):
    async def create(self, url: URL, **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        plain = TLSTransportFactory() if url.scheme == "amqps" else TCPTransportFactory()
        reader, writer = await plain.create(url, **kwargs)
        return reader, coalesce_writes(reader, writer)


class _CoalescingRobustConnection(aio_pika.RobustConnection):
    def __init__(self, url: URL, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.kwargs["transport_factory"] = _CoalescingTransportFactory()  # used by every (re)connect


async def connect(url: str, connection_name: str, timeout_seconds: float) -> AbstractRobustConnection:
    """A robust connection: it reconnects and restores channels, queues and consumers by itself.

    `timeout_seconds` bounds each connection attempt (TCP, AMQP handshake, first channel): a
    broker that accepts the socket but never speaks would otherwise hang the start for good.
    """
    # Made here rather than by aio_pika.connect_robust, so that a connect cut short (its timeout, or
    # a stop while starting) closes the half-made connection instead of leaving its tasks running.
    connection = _CoalescingRobustConnection(make_url(url), client_properties={"connection_name": connection_name})
    try:
        await _connect_or_close(connection, timeout_seconds)
    except TimeoutError as exc:
        raise BrokerError(f"no answer from RabbitMQ at {redact(url)} within {timeout_seconds:g} s") from exc
    except BROKER_ERRORS as exc:
        raise BrokerError(f"cannot connect to RabbitMQ at {redact(url)}: {exc}") from exc
    return connection


async def _connect_or_close(connection: aio_pika.RobustConnection, timeout: float) -> None:
    # The orchestrator's amqp_connect.connect_or_close (a worker cannot import it): a cancel waits
    # for the handshake (bounded by `timeout`) and closes what it opened, so no socket is orphaned.
    attempt = asyncio.ensure_future(connection.connect(timeout=timeout))
    try:
        await asyncio.shield(attempt)
    except BaseException:
        while not attempt.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({attempt})
        if not attempt.cancelled():
            attempt.exception()
        with contextlib.suppress(Exception):
            await connection.close()
        raise


async def open_channel(
    connection: AbstractRobustConnection, *, prefetch: int | None = None, confirms: bool = True
) -> AbstractChannel:
    try:
        channel = await connection.channel(publisher_confirms=confirms, on_return_raises=confirms)
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch)
    except BROKER_ERRORS as exc:
        raise BrokerError(f"cannot open a channel: {exc}") from exc
    return channel


class AmqpPublisher:
    """Publishes on its own confirming channel; returns once the broker has confirmed."""

    def __init__(self, channel: AbstractChannel) -> None:
        self._channel = channel
        self._declared_services: set[str] = set()

    async def ensure_service(self, service: str) -> None:
        """Declare a service's queues once per process, so a task published to it is never unroutable."""
        if service in self._declared_services:
            return
        try:
            await declare_service(self._channel, service)
        except BROKER_ERRORS as exc:
            raise BrokerError(f"cannot declare the queues of service {service!r}: {exc}") from exc
        self._declared_services.add(service)

    async def publish(self, exchange: str, routing_key: str, message: aio_pika.Message, *, mandatory: bool) -> None:
        """Publish and wait for the confirm; `exchange` "" is the default exchange."""
        await self.send(exchange, routing_key, message.body, message.properties, mandatory=mandatory)

    async def send(
        self, exchange: str, routing_key: str, body: bytes, properties: spec.Basic.Properties, *, mandatory: bool
    ) -> None:
        """`publish` of a body and its properties as they go on the wire: the per-event path skips
        building an aio-pika Message (about 13 us against 1 us for the properties alone)."""
        if exchange not in _EXCHANGES:
            # Publishing to an exchange that does not exist would close the shared channel.
            raise KeyError(f"not one of the topology's exchanges: {exchange!r}")
        try:
            if self._channel.is_closed:
                raise aiormq.exceptions.ChannelInvalidStateError(f"{self._channel!r} closed")
            channel = await self._channel.get_underlay_channel()
            # wait=False (aiormq's own channel): the channel is free again once the frames are queued,
            # not once they are written, so concurrent publishes leave in one socket write; the
            # broker's confirm is still awaited.
            options: dict[str, Any] = {"wait": False} if isinstance(channel, aiormq.Channel) else {}
            await channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                timeout=PUBLISH_TIMEOUT_SECONDS,
                **options,
            )
        except aiormq.exceptions.PublishError as exc:
            raise UnroutableError(f"no queue for {routing_key!r} on exchange {exchange or '(default)'!r}") from exc
        except BROKER_ERRORS as exc:
            raise BrokerError(
                f"publish to {exchange or '(default)'!r} with key {routing_key!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
