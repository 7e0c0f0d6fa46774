"""Queue inspection on a RabbitMQ connection of its own: passive declares, dead-letter browsing,
and the declarations of a service's queues.

Not on the publishing connection, because a passive declare of a missing queue makes the broker
close the channel (404), and aiormq then frees the channel number as soon as the broker's
Channel.Close arrives, but queues its Channel.CloseOk with a `put_nowait` that is silently dropped
when the connection's write queue is full (aiormq's 10 frames, or the 4096 plumbing.amqp widens it to:
concurrent publishes can fill either).
The broker still holds that channel, waiting for the CloseOk; the next channel aiormq opens takes
the freed number (it picks the highest in use plus one), and the broker closes the whole
connection with "CHANNEL_ERROR - second 'channel.open' seen", every publish on it with it.
A declare the broker refuses (406: a queue that exists with other arguments) closes its channel
the same way. So this connection carries nothing but inspection and declarations, its write
queue has room for every frame it can have pending, channel numbers go round all of channel_max
before one is used again, and the passive declares run on a few long-lived channels, reopened
only when a 404 closed one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import aiormq
import aiormq.abc

from orchestrator.errors import BrokerUnavailable
from plumbing.amqp import AMQP_ERRORS, connect_or_close
from protocol.topology import TopologyChannel, declare_lane, declare_service

DEFAULT_LANES: Final[int] = 4  # channels asking in parallel: hundreds of queues one after another take too long
_MAX_CHANNEL_NUMBER: Final[int] = 65535


@dataclass(frozen=True)
class QueueStats:
    messages: int  # ready messages
    consumers: int


class _InspectionConnection(aiormq.Connection):
    # Far more than the lanes and dead-letter browses can have pending at once: aiormq drops a
    # Channel.CloseOk that finds the write queue full (see the module docstring).
    FRAME_BUFFER_SIZE = 1024


@dataclass
class _Lane:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    channel: aiormq.abc.AbstractChannel | None = None


class QueueInspector:
    def __init__(
        self,
        url: str,
        connection_name: str,
        *,
        connect_timeout: float = 5.0,
        rpc_timeout: float = 5.0,
        lanes: int = DEFAULT_LANES,
    ) -> None:
        self._url = url
        self._connection_name = connection_name
        self._connect_timeout = connect_timeout
        self._rpc_timeout = rpc_timeout
        self._lanes = [_Lane() for _ in range(max(1, lanes))]
        self._declaring = _Lane()
        self._connection: aiormq.Connection | None = None
        self._connecting: asyncio.Task[aiormq.Connection] | None = None
        self._next_number = 1

    async def queue_stats(self, queues: Sequence[str]) -> dict[str, QueueStats | None]:
        """Ready messages and consumers per queue (None when the queue does not exist).

        Passive declares only: inspecting must never create a queue."""
        connection = await self._connect()
        lanes = self._lanes[: max(1, min(len(self._lanes), len(queues)))]
        work = asyncio.gather(
            *(self._lane_stats(lane, connection, queues[i :: len(lanes)]) for i, lane in enumerate(lanes))
        )
        work.add_done_callback(_retrieve)
        # A caller that stops waiting (a /health timeout) must not cancel the passive declares in
        # flight: aiormq answers a cancelled RPC with a Channel.Close of its own, which races the
        # broker's close after a 404, and the broker then closes the whole connection (504
        # "expected 'channel.open'"). The declares finish; only the waiting is given up.
        parts = await asyncio.shield(work)
        stats: dict[str, QueueStats | None] = {}
        for part in parts:
            stats.update(part)
        return {name: stats[name] for name in queues}

    @asynccontextmanager
    async def channel(self) -> AsyncIterator[aiormq.abc.AbstractChannel]:
        """A short-lived plain channel of the inspection connection, closed on exit.

        For work a robust channel must not restore after a failure: passive declares, basic.get
        with manual acks (closing the channel hands every unsettled message back to its queue)."""
        channel = await self._open_channel(await self._connect())
        try:
            yield channel
        finally:
            if not channel.is_closed:
                with contextlib.suppress(*AMQP_ERRORS):
                    await channel.close()

    async def declare_service(self, service: str) -> None:
        """Exchanges plus the service's queues and bindings (protocol.topology.declare_service).

        aiormq errors are raised as they are (a refused declare: the caller tells the user why)."""
        async with self._declaring_channel() as channel:
            await declare_service(channel, service)

    async def declare_lane(self, service: str, tenant_id: str) -> None:
        """A tenant's lane of a service, after `declare_service`; errors as there."""
        async with self._declaring_channel() as channel:
            await declare_lane(channel, service, tenant_id)

    @asynccontextmanager
    async def _declaring_channel(self) -> AsyncIterator[TopologyChannel]:
        connection = await self._connect()
        async with self._declaring.lock:
            channel = self._declaring.channel
            if channel is None or channel.is_closed or channel.connection is not connection:
                channel = self._declaring.channel = await self._open_channel(connection)
            yield _Topology(channel, self._rpc_timeout)

    async def close(self) -> None:
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
        connection, self._connection = self._connection, None
        for lane in (*self._lanes, self._declaring):
            lane.channel = None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(*AMQP_ERRORS):
                await connection.close()

    async def _lane_stats(
        self, lane: _Lane, connection: aiormq.Connection, queues: Sequence[str]
    ) -> dict[str, QueueStats | None]:
        stats: dict[str, QueueStats | None] = {}
        async with lane.lock:
            for name in queues:
                channel = lane.channel
                if channel is None or channel.is_closed or channel.connection is not connection:
                    channel = lane.channel = await self._open_channel(connection)
                try:
                    ok = await channel.queue_declare(name, passive=True, timeout=self._rpc_timeout)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    stats[name] = None
                    lane.channel = None  # the broker closed it
                    continue
                except (*AMQP_ERRORS, TimeoutError) as exc:
                    raise BrokerUnavailable(f"cannot inspect queues: {exc!r}") from exc
                stats[name] = QueueStats(messages=ok.message_count or 0, consumers=ok.consumer_count or 0)
        return stats

    async def _open_channel(self, connection: aiormq.Connection) -> aiormq.abc.AbstractChannel:
        try:
            return await connection.channel(
                self._channel_number(connection), publisher_confirms=False, timeout=self._rpc_timeout
            )
        except (*AMQP_ERRORS, TimeoutError) as exc:
            raise BrokerUnavailable(f"cannot open a channel: {exc!r}") from exc

    def _channel_number(self, connection: aiormq.Connection) -> int:
        """The next number not in use, in a cycle over channel_max: a number whose close is still
        in flight is not used again before every other one was (aiormq would take it at once)."""
        limit = min(connection.connection_tune.channel_max or _MAX_CHANNEL_NUMBER, _MAX_CHANNEL_NUMBER)
        for _ in range(limit):
            number = self._next_number
            self._next_number = number % limit + 1
            if number not in connection.channels:
                return number
        raise BrokerUnavailable("every channel number of the inspection connection is in use")

    async def _connect(self) -> aiormq.Connection:
        connection = self._connection
        if connection is not None and not connection.is_closed:
            return connection
        # One attempt shared by every caller; a caller that gives up (a /health timeout) does not
        # abort it for the others.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._open_connection(), name="baton-queue-inspector-connect")
        self._connection = await asyncio.shield(self._connecting)
        return self._connection

    async def _open_connection(self) -> aiormq.Connection:
        connection = _InspectionConnection(self._url, client_properties={"connection_name": self._connection_name})
        try:
            await connect_or_close(connection, asyncio.wait_for(connection.connect(), self._connect_timeout))
        except (*AMQP_ERRORS, TimeoutError) as exc:
            raise BrokerUnavailable(f"cannot connect to RabbitMQ for queue inspection: {exc!r}") from exc
        self._next_number = 1
        return connection


class _Topology:
    """protocol.topology's TopologyChannel over a plain aiormq channel."""

    def __init__(self, channel: aiormq.abc.AbstractChannel, timeout: float) -> None:
        self._channel = channel
        self._timeout = timeout

    async def declare_exchange(self, name: str, type: Any = "direct", *, durable: bool = True) -> None:
        await self._channel.exchange_declare(name, exchange_type=str(type), durable=durable, timeout=self._timeout)

    async def declare_queue(
        self, name: str | None = None, *, durable: bool = True, arguments: Any = None
    ) -> _TopologyQueue:
        ok = await self._channel.queue_declare(name or "", durable=durable, arguments=arguments, timeout=self._timeout)
        return _TopologyQueue(self._channel, ok.queue or name or "", self._timeout)


class _TopologyQueue:
    def __init__(self, channel: aiormq.abc.AbstractChannel, name: str, timeout: float) -> None:
        self._channel = channel
        self._name = name
        self._timeout = timeout

    async def bind(self, exchange: Any, routing_key: str | None = None) -> None:
        await self._channel.queue_bind(self._name, str(exchange), routing_key=routing_key or "", timeout=self._timeout)


def _retrieve(done: asyncio.Future[Any]) -> None:
    # Read the outcome of work nobody may be waiting for any more, so it is never reported as lost.
    if not done.cancelled():
        done.exception()
