"""The orchestrator's publishing side of RabbitMQ: task envelopes, cancel broadcasts, queue stats.

One robust connection of its own (consumers live on another connection, so a slow consumer
never holds up a publish); queue stats and dead-letter channels go through a third one
(orchestrator.broker.queue_inspector), so a channel the broker closes there never touches publishing.
Publishes wait for the broker's confirm with `mandatory` set, so an unroutable or nacked message
is an error, never a silent loss. Each task goes to its tenant's lane (`baton.<service>.tenant.<tenant>`,
protocol.topology), declared, recorded for the workers and announced on `baton.control` once per
process before its first publish; after that a publish costs no extra round trip. When the connection
is down the publisher refuses at once instead of waiting for the reconnect: HTTP callers get a fast 503.
aio-pika and aiormq errors do not leave this module; they become `BrokerError`s, with
`maybe_sent` set when the message may have reached the broker (no confirm in time, or the link
broke while the message was on its way): a caller must then not assume the message is lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aio_pika
import aiormq
import aiormq.abc
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiormq import spec

from orchestrator.broker.connect import connect_robust, retry_with_backoff
from orchestrator.broker.queue_inspector import QueueInspector, QueueStats
from orchestrator.broker.stall_guard import StallGuard
from orchestrator.errors import BrokerError, BrokerUnavailable, PublishFailed, RegistryError, UnpublishableJob
from plumbing.amqp import AMQP_ERRORS, publish_confirmed
from plumbing.task_spans import MESSAGING_SYSTEM, task_attributes
from plumbing.tracing import NoTracing, Tracing
from protocol.codec import CodecSet
from protocol.control import CancelCommand, LaneOpened
from protocol.envelope import TaskEnvelope
from protocol.topology import CONTROL_EXCHANGE, TASKS_EXCHANGE, declare_exchanges, lane_queue, lane_routing_key

log = logging.getLogger(__name__)

APP_ID = "baton-orchestrator"


class LaneRecords(Protocol):
    """The Redis set of each service's tenant lanes (orchestrator.store.lanes). Errors: RegistryError."""

    async def record(self, service: str, tenant_id: str) -> None: ...

    async def tenants(self, services: Sequence[str]) -> dict[str, list[str]]: ...


@dataclass(frozen=True)
class _Link:
    connection: AbstractRobustConnection
    channel: AbstractRobustChannel  # publisher confirms, returns raise
    topology: AbstractRobustChannel  # declarations: a refused declare must not close the publish channel


class TaskPublisher:
    def __init__(
        self,
        url: str,
        codecs: CodecSet,
        *,
        publish_timeout: float = 10.0,
        stall_after: float = 1.5,
        connect_timeout: float = 5.0,
        reconnect_interval: float = 2.0,
        max_reconnect_interval: float = 30.0,
        connection_name: str | None = None,
        lanes: LaneRecords | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """Without `lanes` every task goes to its service's shared queue, as before lanes existed
        (benchmarks compare the two; tests of the publishing itself need no Redis)."""
        self._url = url
        self._tracing: Tracing = tracing or NoTracing()
        self._codecs = codecs
        self._publish_timeout = publish_timeout
        self._connect_timeout = connect_timeout
        self._reconnect_interval = reconnect_interval
        self._max_reconnect_interval = max_reconnect_interval
        self._connection_name = connection_name or f"baton-orchestrator-publish-{os.getpid()}"
        self._link: _Link | None = None
        # Passive declares and dead-letter browsing, on a connection of their own.
        self._inspector = QueueInspector(
            url, f"{self._connection_name}-inspect", connect_timeout=connect_timeout, rpc_timeout=publish_timeout
        )
        self._connector: asyncio.Task[None] | None = None
        self._declared: set[str] = set()
        self._lanes = lanes
        self._open_lanes: dict[tuple[str, str], str] = {}  # (service, tenant) -> routing key
        self._declare_lock = asyncio.Lock()
        self._stall = StallGuard(self._probe_link, stall_after=stall_after, probe_timeout=stall_after, interval=1.0)

    @property
    def connected(self) -> bool:
        link = self._link
        return (
            link is not None
            and link.connection.connected.is_set()
            and not link.channel.is_closed
            and not link.topology.is_closed
        )

    async def start(self) -> None:
        """Connect once now; when the broker is down, keep trying in the background instead of failing.

        The orchestrator must come up (and say "broker down" on /health) without RabbitMQ; once the
        first connection is made, aio-pika's robust connection takes over reconnecting.
        """
        self._link = await self._open_link(log_failure=True)
        if self._link is None:
            self._connector = asyncio.create_task(self._connect_until_done(), name="baton-publisher-connect")

    async def close(self) -> None:
        await self._stall.close()
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
            self._connector = None
        await self._inspector.close()
        link, self._link = self._link, None
        if link is not None:
            await link.connection.close()

    def encode_task(self, envelope: TaskEnvelope) -> bytes:
        """The envelope as the message body, or UnpublishableJob: callers encode before they record
        a job, so a job whose task could never be sent is refused instead of left queued forever."""
        try:
            body = self._codecs.encode(envelope, self._codecs.default)
        except (OverflowError, ValueError, TypeError) as exc:  # UnicodeEncodeError is a ValueError
            detail = f"the payload cannot be sent to a worker: {_encode_failure(exc)}"
            raise UnpublishableJob(detail, too_large=False) from exc
        if len(body) > self._codecs.max_bytes:
            raise UnpublishableJob(
                f"the task message would be {len(body)} bytes, over the {self._codecs.max_bytes}-byte cap "
                "(BATON_MAX_MESSAGE_BYTES)",
                too_large=True,
            )
        return body

    async def publish_task(
        self, envelope: TaskEnvelope, *, reply_to: str | None = None, body: bytes | None = None
    ) -> None:
        """Publish to `baton.tasks`, to the tenant's lane of the service; returns once the broker confirmed it.

        `reply_to` is kept when a child task is published again (its caller waits on that queue).
        `body` is the envelope already encoded by `encode_task`; without it the envelope is encoded here.
        """
        if body is None:
            body = self.encode_task(envelope)
        link = self._require_link()
        routing_key = await self._route(link, envelope.service, envelope.tenant_id)
        codec = self._codecs.default
        amqp_properties = envelope.amqp_properties()
        properties = spec.Basic.Properties(
            content_type=codec.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
            timestamp=envelope.created_at,
            message_type=envelope.type,
            app_id=APP_ID,
            reply_to=reply_to,
            **amqp_properties,
        )
        attributes = {**MESSAGING_SYSTEM, "messaging.destination.name": TASKS_EXCHANGE, **task_attributes(envelope)}
        with self._tracing.span(f"publish {TASKS_EXCHANGE}", kind="producer", attributes=attributes):
            self._tracing.inject(amqp_properties["headers"])  # the worker's span continues this trace
            try:
                await self._publish(link, TASKS_EXCHANGE, body, properties, routing_key, mandatory=True)
            except PublishFailed as exc:
                if exc.reason == "unroutable":
                    # The queue was deleted behind our back: declare it again on the next publish.
                    self._declared.discard(envelope.service)
                    self._open_lanes.pop((envelope.service, envelope.tenant_id), None)
                raise

    async def publish_cancel(self, command: CancelCommand) -> None:
        """Broadcast on `baton.control`; not mandatory, since no worker running is not an error."""
        await self._broadcast(self._require_link(), command, correlation_id=command.global_task_id)

    async def lane_queues(self, services: Sequence[str]) -> dict[str, list[str]]:
        """The tenant lanes of each service (queue names), read from Redis in one round trip; every
        service maps to an empty list when lanes are off. Errors: RegistryError."""
        if self._lanes is None:
            return {service: [] for service in services}
        tenants = await self._lanes.tenants(services)
        return {service: [lane_queue(service, tenant) for tenant in tenants.get(service, [])] for service in services}

    @asynccontextmanager
    async def raw_channel(self) -> AsyncIterator[aiormq.abc.AbstractChannel]:
        """A short-lived plain channel, closed on exit, on the inspection connection (never this
        one's: see orchestrator.broker.queue_inspector). Refused at once while publishing is."""
        self._require_link()
        async with self._inspector.channel() as channel:
            yield channel

    async def queue_stats(self, queues: Sequence[str]) -> dict[str, QueueStats | None]:
        """Ready messages and consumers per queue (None when the queue does not exist), asked on the
        inspection connection. Refused at once while publishing is."""
        self._require_link()
        return await self._inspector.queue_stats(queues)

    def _require_link(self) -> _Link:
        link = self._link
        if link is None or not self.connected:
            raise BrokerUnavailable("no connection to RabbitMQ")
        if self._stall.stalled:
            raise BrokerUnavailable("the link to RabbitMQ is stalled (no confirm in time)")
        return link

    async def _probe_link(self) -> None:
        """One round trip to the broker: a passive declare of the tasks exchange."""
        link = self._link
        if link is None:
            raise BrokerUnavailable("no connection to RabbitMQ")
        await link.topology.get_exchange(TASKS_EXCHANGE, ensure=True)

    async def _broadcast(self, link: _Link, command: CancelCommand | LaneOpened, **properties: Any) -> None:
        codec = self._codecs.default
        props = spec.Basic.Properties(
            content_type=codec.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
            message_type=command.kind,
            app_id=APP_ID,
            **properties,
        )
        await self._publish(link, CONTROL_EXCHANGE, self._codecs.encode(command, codec), props, "", mandatory=False)

    async def _route(self, link: _Link, service: str, tenant_id: str) -> str:
        """The routing key of the task's queue, declaring what it needs first (once per process)."""
        if self._lanes is None:
            await self._ensure_service(link, service)
            return service
        routing_key = self._open_lanes.get((service, tenant_id))
        if routing_key is not None:
            return routing_key  # the fast path: no round trip
        await self._ensure_service(link, service)
        if await self._open_lane(self._lanes, service, tenant_id):
            try:
                await self._broadcast(link, LaneOpened(service=service, tenant_id=tenant_id))
            except BrokerError as exc:
                # The workers' periodic read of the lane set finds it instead, a little later.
                log.warning("lane_opened broadcast for %s of tenant %s failed: %s", service, tenant_id, exc)
        return self._open_lanes.get((service, tenant_id)) or lane_routing_key(service, tenant_id)

    async def _open_lane(self, lanes: LaneRecords, service: str, tenant_id: str) -> bool:
        """Declare the lane and record it for the workers; False when another publish just did."""
        async with self._declare_lock:
            if (service, tenant_id) in self._open_lanes:
                return False
            what = f"the lane of tenant {tenant_id!r} on {service!r}"
            try:
                await self._stall.guard(self._inspector.declare_lane(service, tenant_id), self._publish_timeout)
            except TimeoutError as exc:
                raise PublishFailed("timeout", f"declaring {what} timed out") from exc
            except AMQP_ERRORS as exc:
                raise self._translate(exc, f"declaring {what} failed", maybe_sent=False) from exc
            try:
                # Before the first publish: a worker that starts later must find the lane to consume it.
                await lanes.record(service, tenant_id)
            except RegistryError as exc:
                raise PublishFailed("lane_unrecorded", f"recording {what} failed: {exc}") from exc
            self._open_lanes[(service, tenant_id)] = lane_routing_key(service, tenant_id)
            return True

    async def _ensure_service(self, link: _Link, service: str) -> None:
        if service in self._declared:
            return
        # One lock for all services: declarations are rare, and a batch of a thousand jobs for a
        # new service must declare its queues once, not a thousand times. On the inspection
        # connection: a refused declare (a queue that exists with other arguments) closes its
        # channel, which on this connection could take publishing down (orchestrator.broker.queue_inspector).
        async with self._declare_lock:
            if service in self._declared:
                return
            try:
                await self._stall.guard(self._inspector.declare_service(service), self._publish_timeout)
            except TimeoutError as exc:
                raise PublishFailed("timeout", f"declaring the queues of {service!r} timed out") from exc
            except AMQP_ERRORS as exc:
                raise self._translate(exc, f"declaring the queues of {service!r} failed", maybe_sent=False) from exc
            self._declared.add(service)

    async def _publish(
        self, link: _Link, exchange: str, body: bytes, properties: spec.Basic.Properties, key: str, *, mandatory: bool
    ) -> None:
        try:
            # Covers the whole call (a robust channel first waits for its connection); fails early when
            # the link goes silent, not merely when a busy broker confirms late.
            await self._stall.guard(
                publish_confirmed(
                    link.channel, exchange, body, properties, key, mandatory=mandatory, timeout=self._publish_timeout
                ),
                self._publish_timeout,
            )
        except aiormq.exceptions.PublishError as exc:
            raise PublishFailed("unroutable", f"no queue is bound for routing key {key!r}") from exc
        except aiormq.exceptions.DeliveryError as exc:
            raise PublishFailed("nacked", "the broker refused the message") from exc
        except TimeoutError as exc:
            # The message may be on the wire or queued already, its confirm late or lost.
            raise PublishFailed("timeout", str(exc), maybe_sent=True) from exc
        except AMQP_ERRORS as exc:
            # Broken while publishing: whether the broker got the message first cannot be told.
            raise self._translate(exc, "publish failed", maybe_sent=True) from exc

    def _translate(self, exc: BaseException, what: str, *, maybe_sent: bool) -> BrokerError:
        if not self.connected:
            return BrokerUnavailable(f"{what}: connection to RabbitMQ lost ({exc})", maybe_sent=maybe_sent)
        return PublishFailed("channel_error", f"{what}: {exc}", maybe_sent=maybe_sent)

    async def _connect_until_done(self) -> None:
        self._link = await retry_with_backoff(
            lambda: self._open_link(log_failure=False),
            first_delay=self._reconnect_interval,
            max_delay=self._max_reconnect_interval,
            wait_first=True,
        )
        log.info("publisher connected to RabbitMQ")

    async def _open_link(self, *, log_failure: bool) -> _Link | None:
        try:
            connection = await connect_robust(
                self._url,
                self._connection_name,
                timeout=self._connect_timeout,
                reconnect_interval=self._reconnect_interval,
            )
        except BrokerUnavailable as exc:
            if log_failure:
                log.warning("%s; publishing refused until it is back", exc)
            return None
        try:
            async with asyncio.timeout(self._connect_timeout):
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                topology = await connection.channel(publisher_confirms=False)
                await declare_exchanges(topology)
        except (*AMQP_ERRORS, TimeoutError) as exc:
            log.warning("RabbitMQ connected but channel setup failed: %s", exc)
            await connection.close()
            return None
        connection.reconnect_callbacks.add(self._forget_declarations)
        return _Link(connection, channel, topology)

    def _forget_declarations(self, *_: object) -> None:
        # After a reconnect (perhaps to a broker that lost its definitions) declare everything again.
        self._declared.clear()
        self._open_lanes.clear()


def _encode_failure(exc: Exception) -> str:
    if isinstance(exc, OverflowError):
        return "an integer is outside the 64-bit range the message format carries"
    if isinstance(exc, UnicodeEncodeError):
        return "a string holds a lone surrogate (\\ud800-\\udfff), which is not Unicode text"
    return str(exc)
