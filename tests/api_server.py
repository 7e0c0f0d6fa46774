"""An orchestrator on the real RabbitMQ and Redis, with two uuid tenants and a uuid service, for tests.

The service and its job type are announced through ServiceDirectory.record_heartbeat, as a
worker would, so no test touches the built-in queues; every queue and Redis key a test makes
is deleted afterwards.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aio_pika
import redis.asyncio as aioredis
from aio_pika.abc import AbstractConnection
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.app import LIVE, create_app
from orchestrator.broker.deployment_check import DeploymentSettings
from orchestrator.settings import OrchestratorSettings, QuotaSettings, SweeperSettings, WebSocketSettings
from orchestrator.store import keys
from plumbing.tracing import Tracing
from protocol.codec import DEFAULT_MAX_MESSAGE_BYTES, CodecSet
from protocol.control import WorkerHeartbeat
from protocol.envelope import TaskEnvelope, utc_now
from protocol.events import TaskEvent
from protocol.lanes import lanes_key
from protocol.topology import EVENTS_EXCHANGE, event_routing_key, lane_queue, service_queues, task_queue
from tests.directory_cleanup import forget_services
from tests.redis_keys import keys_matching

Client = TestClient[web.Request, web.Application]


@dataclass
class Api:
    client: Client
    app: web.Application
    tenant_a: str
    tenant_b: str
    headers_a: dict[str, str]
    headers_b: dict[str, str]
    service: str
    job_type: str
    amqp: AbstractConnection
    codecs: CodecSet
    settings: OrchestratorSettings | None = None  # what the app was made with: serve_replica makes another
    deployment: DeploymentSettings | None = None

    async def announce(self, *more_types: str, cache_ttls: dict[str, int] | None = None) -> None:
        """The test service's heartbeat: its job type (and `more_types`) route to it, with `cache_ttls` as
        its handlers' declared result-cache TTLs."""
        heartbeat = WorkerHeartbeat(
            worker_id=f"test-{self.service}",
            service=self.service,
            job_types=[self.job_type, *more_types],
            cache_ttls=cache_ttls or {},
            concurrency=1,
            in_flight=0,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            started_at=utc_now(),
            interval_seconds=30,
        )
        await self.app[LIVE].directory.record_heartbeat(heartbeat)

    @property
    def work_queues(self) -> tuple[str, ...]:
        """The service queue and the two tenants' lanes of it."""
        return (task_queue(self.service), *(lane_queue(self.service, t) for t in (self.tenant_a, self.tenant_b)))

    async def queued_envelopes(self) -> list[tuple[aio_pika.abc.AbstractIncomingMessage, TaskEnvelope]]:
        """Every message in the service queue and the tenants' lanes, taken off them."""
        found = []
        for name in self.work_queues:
            channel = await self.amqp.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                continue  # the broker closed the channel
            try:
                while (message := await queue.get(no_ack=True, fail=False)) is not None:
                    found.append((message, self.codecs.decode(TaskEnvelope, message.body, message.content_type)))
            finally:
                await channel.close()
        return found

    async def queue_depth(self) -> int:
        """Ready messages in the service queue and the tenants' lanes; 0 for a queue that does not exist yet."""
        depth = 0
        for name in self.work_queues:
            channel = await self.amqp.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                continue
            try:
                depth += queue.declaration_result.message_count or 0
            finally:
                await channel.close()
        return depth

    async def emit(self, event: TaskEvent) -> None:
        """Publish a task event as a worker would."""
        channel = await self.amqp.channel(publisher_confirms=True)
        try:
            exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
            message = aio_pika.Message(
                self.codecs.encode(event),
                content_type=self.codecs.default.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await exchange.publish(message, event_routing_key(event.tenant_id, event.service, event.event))
        finally:
            await channel.close()


async def delete_lanes(
    channel: aio_pika.abc.AbstractChannel, redis: aioredis.Redis, service: str, tenants: tuple[str, ...]
) -> None:
    """The tenants' lanes of a service the test made, and the service's lane set."""
    for tenant in tenants:
        await channel.queue_delete(lane_queue(service, tenant))
    await redis.delete(lanes_key(service))


def _settings(
    rabbitmq_url: str,
    redis_url: str,
    keys_to_tenants: dict[str, str],
    admin_key: str | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    service_tokens: dict[str, str] | None = None,
    quotas: QuotaSettings | None = None,
    websockets: WebSocketSettings | None = None,
    event_history_max: int | None = None,
) -> OrchestratorSettings:
    history = {} if event_history_max is None else {"event_history_max": event_history_max}
    return OrchestratorSettings(
        **history,
        rabbitmq_url=rabbitmq_url,
        redis_url=redis_url,
        api_keys=keys_to_tenants,
        admin_key=admin_key,
        max_message_bytes=max_message_bytes,
        service_tokens=service_tokens,
        quotas=quotas or QuotaSettings(),
        websockets=websockets or WebSocketSettings(),
    )


def quiet_sweeper(unique: str, tenants: frozenset[str]) -> SweeperSettings:
    """A sweeper that only ever looks at the test's own tenants, with its own lock."""
    return SweeperSettings(tenants=tenants, lock_key=f"test:sweeper:{unique}")


def _of_tenants(key: bytes, tenant_ids: tuple[str, ...]) -> bool:
    """`key` is "<PREFIX>:*:<tenant>:*" or "<PREFIX>:*:<tenant>" for one of `tenant_ids`."""
    name = key.decode()
    return any(f":{tenant}:" in name or name.endswith(f":{tenant}") for tenant in tenant_ids)


async def _forget_tenants(redis: aioredis.Redis, tenants_glob: str, *tenant_ids: str) -> None:
    """The keys of `tenant_ids`, all of which `tenants_glob` matches: one scan finds them all, since each scan
    walks the whole shared Redis (tests/redis_keys.py; 0.33-0.41 s for one, 0.71-0.79 s for two with
    215,000 keys at load 3)."""
    found = await keys_matching(redis, f"{keys.PREFIX}:*:{tenants_glob}*")
    doomed = [key for key in found if _of_tenants(key, tenant_ids)]
    if doomed:
        await redis.delete(*doomed)
    for tenant_id in tenant_ids:
        cached = [entry async for entry, _ in redis.zscan_iter(keys.CACHE_ENTRIES, match=f"*:{tenant_id}:*")]
        if cached:
            await redis.zrem(keys.CACHE_ENTRIES, *cached)


@asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[Client]:
    # Started before the client exists, so an app that fails to start leaves no open session behind.
    server = TestServer(app)
    try:
        await server.start_server()
    except BaseException:
        await server.close()
        raise
    async with TestClient(server) as client:
        yield client


@asynccontextmanager
async def serve_api(
    rabbitmq_url: str,
    redis_url: str,
    redis_client: aioredis.Redis,
    unique: str,
    sweeper: Callable[[frozenset[str]], SweeperSettings] | None = None,
    app_rabbitmq_url: str | None = None,
    tracing: Tracing | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    service_tokens: dict[str, str] | None = None,
    quotas: Callable[[str, str], QuotaSettings] | None = None,
    websockets: WebSocketSettings | None = None,
    event_history_max: int | None = None,
) -> AsyncIterator[Api]:
    """An orchestrator for two fresh tenants and a fresh service; everything it made is removed after.
    `tracing` gives it spans (off by default).

    `app_rabbitmq_url` points the orchestrator (not the test's own connection) elsewhere, e.g. a proxy;
    `service_tokens` maps token -> service, as BATON_SERVICE_TOKEN does. It consumes an events queue of
    its own, bound to its tenants' events and its service's announcements only, so it sees every one of them
    (on the shared `baton.orchestrator.events`, another test run's orchestrators would take their share).
    `quotas` makes the job quotas from the two tenants' ids (the defaults otherwise), `websockets` the
    WebSocket limits, `event_history_max` the events kept per job.
    """
    tenant_a, tenant_b = f"ta-{unique}", f"tb-{unique}"
    key_a, key_b = f"key-a-{unique}", f"key-b-{unique}"
    service, job_type = f"svc-{unique}", f"job_{unique}"
    tenants = frozenset({tenant_a, tenant_b})
    settings = _settings(
        app_rabbitmq_url or rabbitmq_url,
        redis_url,
        {key_a: tenant_a, key_b: tenant_b},
        admin_key=f"admin-{unique}",
        max_message_bytes=max_message_bytes,
        service_tokens=service_tokens,
        quotas=quotas(tenant_a, tenant_b) if quotas is not None else None,
        websockets=websockets,
        event_history_max=event_history_max,
    )
    deployment = DeploymentSettings(
        events_queue=f"test.events.{unique}",
        events_routing_keys=(f"{tenant_a}.#", f"{tenant_b}.#", f"_system.{service}.#"),
        replicas_key=f"test:replicas:{unique}",
    )
    app = create_app(
        settings,
        sweeper=sweeper(tenants) if sweeper is not None else quiet_sweeper(unique, tenants),
        deployment=deployment,
        tracing=tracing,
    )
    # A plain connection: a channel closed by a failed passive declare must stay closed.
    amqp = await aio_pika.connect(rabbitmq_url, client_properties={"connection_name": f"test-api-{unique}"})
    try:
        async with _serve(app) as client:
            api = Api(
                client=client,
                app=app,
                tenant_a=tenant_a,
                tenant_b=tenant_b,
                headers_a={"Authorization": f"Bearer {key_a}"},
                headers_b={"Authorization": f"Bearer {key_b}"},
                service=service,
                job_type=job_type,
                amqp=amqp,
                codecs=CodecSet(),
                settings=settings,
                deployment=deployment,
            )
            await api.announce()
            yield api
    finally:
        channel = await amqp.channel()
        for spec in service_queues(service):
            await channel.queue_delete(spec.name)
        await channel.queue_delete(deployment.events_queue)
        await redis_client.delete(deployment.replicas_key)
        await delete_lanes(channel, redis_client, service, (tenant_a, tenant_b))
        await amqp.close()
        await _forget_tenants(redis_client, f"t[ab]-{unique}", tenant_a, tenant_b)
        await forget_services(redis_client, service)
        await redis_client.hdel(keys.ROUTES, job_type)
        await redis_client.hdel(keys.CACHE_DEFAULTS, job_type)
        await redis_client.delete(f"test:sweeper:{unique}")


@asynccontextmanager
async def serve_replica(api: Api) -> AsyncIterator[Client]:
    """A second orchestrator replica of `api`'s deployment: the same settings and keys, its own process state."""
    assert api.settings is not None, "serve_api makes the first replica"
    unique = api.service.removeprefix("svc-")
    tenants = frozenset({api.tenant_a, api.tenant_b})
    app = create_app(api.settings, sweeper=quiet_sweeper(f"{unique}-2", tenants), deployment=api.deployment)
    async with _serve(app) as client:
        yield client


@asynccontextmanager
async def serve_api_without_broker(redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Api]:
    """The orchestrator with RABBITMQ_URL pointing at a closed port."""
    tenant = f"tc-{unique}"
    key = f"key-c-{unique}"
    service, job_type = f"svc-{unique}", f"job_{unique}"
    app = create_app(
        _settings("amqp://guest:guest@127.0.0.1:1/", redis_url, {key: tenant}),
        sweeper=quiet_sweeper(unique, frozenset({tenant})),
    )
    try:
        async with _serve(app) as client:
            api = Api(
                client=client,
                app=app,
                tenant_a=tenant,
                tenant_b=tenant,
                headers_a={"Authorization": f"Bearer {key}"},
                headers_b={"Authorization": f"Bearer {key}"},
                service=service,
                job_type=job_type,
                amqp=None,  # type: ignore[arg-type]
                codecs=CodecSet(),
            )
            await api.announce()
            yield api
    finally:
        await _forget_tenants(redis_client, tenant, tenant)
        await redis_client.hdel(keys.ROUTES, job_type)
        await redis_client.srem(keys.ANNOUNCED_SERVICES, service)
        await redis_client.delete(keys.workers(service))
