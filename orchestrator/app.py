"""The one place that builds the orchestrator: every object, every app key, every route.

`create_app` constructs everything up front (nothing connects yet) and gives each resource its
own cleanup context; aiohttp starts them in this order and stops them in reverse:
the task publisher, the Redis client, the update bus, the WebSocket hub, the event consumer,
the sweeper, the workflow engine's recovery loop, the running-executions gauge and the deployment
check. Sockets are closed with GOING_AWAY at shutdown already (aiohttp waits for open handlers
before cleanup), so clients reconnect elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from orchestrator.auth import Authenticator
from orchestrator.broker.consumer_link import ConsumerLink
from orchestrator.broker.dead_letter_queues import DeadLetterQueues
from orchestrator.broker.deployment_check import DeploymentCheck, DeploymentSettings
from orchestrator.broker.event_consumer import EventConsumer
from orchestrator.broker.publisher import TaskPublisher
from orchestrator.http.cache_routes import CacheRoutes
from orchestrator.http.dead_letter_routes import DeadLetterRoutes
from orchestrator.http.docs_routes import DocsRoutes, swagger_static_folder
from orchestrator.http.errors import error_middleware
from orchestrator.http.execution_routes import ExecutionRoutes
from orchestrator.http.health import HealthChecker, LiveStatus
from orchestrator.http.identity_routes import IdentityRoutes
from orchestrator.http.job_event_routes import JobEventRoutes
from orchestrator.http.job_routes import JobRoutes
from orchestrator.http.overview_routes import OverviewRoutes
from orchestrator.http.queue_overview import QueueOverview
from orchestrator.http.request import MAX_BATCH_BODY_BYTES
from orchestrator.http.request_context import request_context_middleware
from orchestrator.http.routes import add_routes, openapi_document
from orchestrator.http.system_routes import SystemRoutes
from orchestrator.http.workflow_routes import WorkflowRoutes
from orchestrator.jobs.dead_letter_replay import DeadLetterService
from orchestrator.jobs.event_sink import EventSink
from orchestrator.jobs.quota import JobQuota
from orchestrator.jobs.recovery import JobRecovery
from orchestrator.jobs.result_cache import JobCache
from orchestrator.jobs.service import JobService
from orchestrator.jobs.sweeper import Sweeper
from orchestrator.live.hub import WebSocketHub
from orchestrator.live.update_bus import UpdateBus
from orchestrator.live.websocket import WebSocketEndpoint
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.settings import OrchestratorSettings, SweeperSettings
from orchestrator.store.directory import ServiceDirectory
from orchestrator.store.event_history import EventHistory
from orchestrator.store.flow_limits import FlowLimitStats
from orchestrator.store.job_stats import JobStats
from orchestrator.store.lanes import RedisLanes
from orchestrator.store.redis_client import make_redis
from orchestrator.store.registry import RedisTaskRegistry
from orchestrator.store.result_cache import RedisResultCache
from orchestrator.store.task_owners import TaskOwners
from orchestrator.store.token_bucket import RedisTokenBucket
from orchestrator.workflows.declared import DeclaredDefinitions, WorkflowDeclarations
from orchestrator.workflows.engine import WorkflowEngine
from orchestrator.workflows.execution_jobs import RegistryExecutionJobs
from orchestrator.workflows.job_cancel import ExecutionJobCancel
from orchestrator.workflows.job_starter import DeclaredWorkflowJobs
from orchestrator.workflows.running_gauge import RunningExecutionsGauge
from orchestrator.workflows.snapshots import ExecutionSnapshots
from orchestrator.workflows.storage import DefinitionStore, ExecutionStore
from plumbing.redis_batch import PipelineBatcher
from plumbing.tracing import NoTracing, Tracing
from protocol.codec import CodecSet
from protocol.events import TaskEvent

SHUTDOWN_TIMEOUT_SECONDS: Final[float] = 10.0


@dataclass(frozen=True)
class LiveState:
    """The Redis side of one replica: its client, the registry and directory on it, the bus, the hub."""

    redis: aioredis.Redis
    registry: RedisTaskRegistry
    directory: ServiceDirectory
    bus: UpdateBus
    hub: WebSocketHub


METRICS: Final = web.AppKey("baton_metrics", OrchestratorMetrics)
AUTHENTICATOR: Final = web.AppKey("baton_authenticator", Authenticator)
PUBLISHER: Final = web.AppKey("baton_publisher", TaskPublisher)
LIVE: Final = web.AppKey("baton_live", LiveState)
JOBS: Final = web.AppKey("baton_jobs", JobService)
HEALTH: Final = web.AppKey("baton_health", HealthChecker)
DEAD_LETTERS: Final = web.AppKey("baton_dead_letters", DeadLetterService)
WORKFLOWS: Final = web.AppKey("baton_workflows", WorkflowEngine)


def create_app(
    settings: OrchestratorSettings,
    *,
    metrics: OrchestratorMetrics | None = None,
    authenticator: Authenticator | None = None,
    sweeper: SweeperSettings | None = None,
    deployment: DeploymentSettings | None = None,
    tracing: Tracing | None = None,
) -> web.Application:
    """The application; `authenticator` is passed by `__main__`, which prints the dev key it made, and
    `tracing` too, built from BATON_TRACING (off when not given)."""
    tracing = tracing or NoTracing()
    sweeper_settings = sweeper or settings.sweeper
    deployment_settings = deployment or DeploymentSettings()
    metrics = metrics or OrchestratorMetrics()
    if authenticator is None:
        authenticator, _ = Authenticator.from_settings(settings)
    codecs = CodecSet(settings.max_message_bytes)

    redis = make_redis(settings.redis_url)
    publisher = TaskPublisher(settings.rabbitmq_url, codecs, lanes=RedisLanes(redis), tracing=tracing)
    # One batcher: a lane's event application and another's update publish share a round trip.
    batcher = PipelineBatcher(redis)
    live = LiveState(
        redis=redis,
        registry=RedisTaskRegistry(redis, batcher=batcher, history_max=settings.event_history_max),
        directory=ServiceDirectory(redis),
        bus=UpdateBus(redis, batcher=batcher),
        hub=WebSocketHub(metrics, client_buffer=settings.websockets.client_buffer),
    )
    recovery = JobRecovery(redis, history_max=settings.event_history_max)
    history = EventHistory(redis, batcher)
    stats = JobStats(redis)
    quota = JobQuota(RedisTokenBucket(redis, batcher), settings.quotas, metrics)

    async def on_step_event(event: TaskEvent) -> None:
        await workflows.on_step_event(event)  # bound below: the engine emits through this sink

    events = EventSink(live.registry, live.bus, metrics, on_step_event=on_step_event, stats=stats)
    executions = ExecutionStore(redis)
    declared = DeclaredDefinitions(redis)
    workflows = WorkflowEngine(
        DefinitionStore(redis, declared),
        executions,
        RegistryExecutionJobs(live.registry, recovery),
        events,
        publisher,
        live.directory,
        redis,
        metrics,
    )
    running_gauge = RunningExecutionsGauge(executions, metrics.executions_running.set)

    def event_consumer(connection: AbstractRobustConnection) -> EventConsumer:
        return EventConsumer(
            connection,
            events,
            live.directory,
            metrics,
            codecs,
            queue_name=deployment_settings.events_queue,
            routing_keys=deployment_settings.events_routing_keys,
            workflows=WorkflowDeclarations(declared, live.directory),
            tracing=tracing,
        )

    consumer = ConsumerLink(settings.rabbitmq_url, f"baton-orchestrator-events-{os.getpid()}", event_consumer)
    result_cache = RedisResultCache(redis)
    jobs = JobService(
        live.registry,
        live.directory,
        live.bus,
        publisher,
        metrics,
        cancel_workflow=ExecutionJobCancel(workflows, live.registry),
        workflows=DeclaredWorkflowJobs(declared, workflows, live.registry),
        cache=JobCache(live.directory, in_flight_seconds=settings.cache_in_flight_seconds),
        stored_envelope=recovery.stored_envelope,
        stats=stats,
    )
    dead_letters = DeadLetterService(
        DeadLetterQueues(publisher, codecs), recovery, publisher, live.bus, TaskOwners(redis)
    )
    sweeper_task = Sweeper(redis, recovery, live.directory, publisher, live.bus, metrics, sweeper_settings, stats=stats)
    deployment_check = DeploymentCheck(redis, publisher.queue_stats, deployment_settings)
    health = HealthChecker(
        publisher,
        live.registry,
        live.directory,
        metrics,
        live_status=lambda: LiveStatus(consumer.state, live.bus.state, deployment_check.health),
        flow_limits=FlowLimitStats(redis),
    )

    # read_json enforces the per-route caps; this is aiohttp's own backstop for request.read().
    app = web.Application(
        client_max_size=MAX_BATCH_BODY_BYTES,
        middlewares=[request_context_middleware(tracing, metrics), error_middleware],
    )
    app[METRICS] = metrics
    app[AUTHENTICATOR] = authenticator
    app[PUBLISHER] = publisher
    app[LIVE] = live
    app[JOBS] = jobs
    app[HEALTH] = health
    app[DEAD_LETTERS] = dead_letters
    app[WORKFLOWS] = workflows

    add_routes(
        app.router,
        [
            JobRoutes(jobs, authenticator, quota),
            JobEventRoutes(history, authenticator),
            IdentityRoutes(authenticator),
            WorkflowRoutes(workflows, live.directory, authenticator, quota),
            ExecutionRoutes(workflows, live.directory, authenticator),
            DeadLetterRoutes(dead_letters, authenticator),
            CacheRoutes(result_cache, authenticator),
            SystemRoutes(health, metrics, openapi_document, cache_entries=result_cache.count),
            DocsRoutes(swagger_static_folder()),
            OverviewRoutes(QueueOverview(publisher, live.directory, dead_letters, stats), stats, authenticator),
            WebSocketEndpoint(
                authenticator=authenticator,
                cancel_job=jobs.cancel,
                registry=live.registry,
                hub=live.hub,
                events=events,
                max_message_bytes=settings.max_message_bytes,
                limits=settings.websockets,
                snapshot_extras=ExecutionSnapshots(executions).extras,
                history=history,
            ),
        ],
    )

    live.bus.add_listener(live.hub.dispatch)
    app.cleanup_ctx.extend(
        [
            _lifecycle(publisher.start, publisher.close),
            _lifecycle(_nothing, redis.aclose),
            _lifecycle(live.bus.start, live.bus.stop),
            _lifecycle(_nothing, live.hub.close_all),
            _lifecycle(_sync(consumer.start), consumer.stop),
            _lifecycle(sweeper_task.start, sweeper_task.stop),
            _lifecycle(_sync(workflows.start), workflows.stop),
            _lifecycle(_sync(running_gauge.start), running_gauge.stop),
            _lifecycle(_sync(deployment_check.start), deployment_check.stop),
            _lifecycle(_nothing, stats.flush),  # stopped before Redis closes: the counts under way are sent
        ]
    )

    async def close_sockets(app: web.Application) -> None:
        # aiohttp waits for open handlers before running cleanup contexts; WebSocket handlers
        # only end when their socket closes, so close them at shutdown already.
        await live.hub.close_all()

    app.on_shutdown.append(close_sockets)
    return app


CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def _lifecycle(start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> CleanupContext:
    async def context(app: web.Application) -> AsyncIterator[None]:
        await start()
        yield
        await stop()

    return context


def _sync(start: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        start()

    return run


async def _nothing() -> None:
    return None
