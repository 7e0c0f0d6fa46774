"""The live half of the orchestrator, started and stopped with the aiohttp application.

One cleanup context starts, in order, the Redis client, the registry and directory, the
update bus, the WebSocket hub, the AMQP connection and the event consumer, and unwinds
them in reverse: sockets are closed with GOING_AWAY first, so clients reconnect elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Final

import redis.asyncio as aioredis
import redis.exceptions as redis_exc
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from orchestrator.auth import Authenticator
from orchestrator.broker.connect import connect_robust, retry_with_backoff
from orchestrator.broker.event_consumer import BusState, ConsumerState, EventConsumer
from orchestrator.errors import BrokerUnavailable
from orchestrator.http.schemas import DeploymentHealth
from orchestrator.live.hub import WebSocketHub
from orchestrator.live.update_bus import UpdateBus
from orchestrator.live.websocket import add_ws_routes
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.models import CancelResult
from orchestrator.store.directory import ServiceDirectory
from orchestrator.store.redis_batch import PipelineBatcher
from orchestrator.store.registry import RedisTaskRegistry
from protocol.codec import CodecSet
from protocol.settings import Settings
from protocol.topology import ORCHESTRATOR_EVENTS_QUEUE

REDIS_HEALTH_CHECK_SECONDS: Final[int] = 15
REDIS_SOCKET_TIMEOUT_SECONDS: Final[float] = 5.0
REDIS_MAX_CONNECTIONS: Final[int] = 256
AMQP_CONNECT_TIMEOUT_SECONDS: Final[float] = 5.0
AMQP_RETRY_FIRST_SECONDS: Final[float] = 1.0
AMQP_RETRY_MAX_SECONDS: Final[float] = 30.0

log = logging.getLogger(__name__)


@dataclass
class LiveState:
    redis: aioredis.Redis
    registry: RedisTaskRegistry
    directory: ServiceDirectory
    bus: UpdateBus
    hub: WebSocketHub
    consumer: asyncio.Task[tuple[AbstractRobustConnection, EventConsumer]]  # done once RabbitMQ answered


async def start_consumer(
    settings: Settings,
    registry: RedisTaskRegistry,
    directory: ServiceDirectory,
    bus: UpdateBus,
    metrics: OrchestratorMetrics,
    codecs: CodecSet,
    queue_name: str = ORCHESTRATOR_EVENTS_QUEUE,
) -> tuple[AbstractRobustConnection, EventConsumer]:
    connection = await connect_robust_eventually(settings.rabbitmq_url, f"baton-orchestrator-events-{os.getpid()}")
    consumer = EventConsumer(connection, registry, directory, bus, metrics, codecs, queue_name=queue_name)
    try:
        await consumer.start()
    except BaseException:
        await connection.close()
        raise
    return connection, consumer


async def stop_consumer(task: asyncio.Task[tuple[AbstractRobustConnection, EventConsumer]]) -> None:
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


LIVE: Final = web.AppKey("baton_live", LiveState)


@dataclass(frozen=True)
class LiveStatus:
    event_consumer: ConsumerState
    update_bus: BusState
    deployment: DeploymentHealth = field(default_factory=DeploymentHealth)


def live_status(live: LiveState) -> LiveStatus:
    task = live.consumer
    consumer: ConsumerState
    if not task.done():
        consumer = "connecting"
    elif task.cancelled() or task.exception() is not None:
        consumer = "failed"
    else:
        consumer = task.result()[1].state
    return LiveStatus(consumer, "subscribed" if live.bus.subscribed else "resubscribing")


def make_redis(url: str) -> aioredis.Redis:
    """A client that survives short Redis blips: commands are retried on connection errors
    with a short backoff, and idle connections are checked before use. The pool blocks when
    all connections are busy (a burst of requests waits) instead of failing with an error."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        health_check_interval=REDIS_HEALTH_CHECK_SECONDS,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        retry_on_error=[redis_exc.ConnectionError, redis_exc.TimeoutError],
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() disconnects it


async def connect_robust_eventually(url: str, connection_name: str) -> AbstractRobustConnection:
    """The first connect of a robust connection, retried with backoff until the broker answers.

    aio-pika reconnects a robust connection only once it has connected; the orchestrator must
    also start (and report the broker down on /health) while RabbitMQ is not there yet."""

    async def attempt() -> AbstractRobustConnection | None:
        try:
            return await connect_robust(url, connection_name, timeout=AMQP_CONNECT_TIMEOUT_SECONDS)
        except BrokerUnavailable as exc:
            log.warning("event consumer: %s; retrying", exc)
            return None

    return await retry_with_backoff(attempt, first_delay=AMQP_RETRY_FIRST_SECONDS, max_delay=AMQP_RETRY_MAX_SECONDS)


def setup_live(
    app: web.Application,
    *,
    settings: Settings,
    metrics: OrchestratorMetrics,
    authenticator: Authenticator,
    cancel_job: Callable[[str, str], Awaitable[CancelResult]],
    codecs: CodecSet,
    events_queue: str = ORCHESTRATOR_EVENTS_QUEUE,
) -> None:
    async def live_context(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            redis = make_redis(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            # One batcher: a lane's event application and another's update publish share a round trip.
            batcher = PipelineBatcher(redis)
            registry = RedisTaskRegistry(redis, batcher=batcher)
            directory = ServiceDirectory(redis)
            bus = UpdateBus(redis, batcher=batcher)
            await bus.start()
            stack.push_async_callback(bus.stop)
            hub = WebSocketHub(metrics)
            stack.callback(bus.add_listener(hub.dispatch))
            consumer_task = asyncio.create_task(
                start_consumer(settings, registry, directory, bus, metrics, codecs, events_queue),
                name="baton-event-consumer-start",
            )
            stack.push_async_callback(stop_consumer, consumer_task)
            stack.push_async_callback(hub.close_all)
            app[LIVE] = LiveState(redis, registry, directory, bus, hub, consumer_task)
            yield

    async def close_sockets(app: web.Application) -> None:
        # aiohttp waits for open handlers before running cleanup contexts; WebSocket handlers
        # only end when their socket closes, so close them at shutdown already.
        live = app.get(LIVE)
        if live is not None:
            await live.hub.close_all()

    app.cleanup_ctx.append(live_context)
    app.on_shutdown.append(close_sockets)
    add_ws_routes(
        app,
        authenticator=authenticator,
        cancel_job=cancel_job,
        metrics=metrics,
        live=_live_state,
        max_message_bytes=settings.max_message_bytes,
    )


def _live_state(app: web.Application) -> LiveState:
    return app[LIVE]
