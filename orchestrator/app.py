"""The orchestrator's aiohttp application: every resource started and stopped in a cleanup context.

Start order (stop order is the reverse): the task publisher, then the live state (Redis,
registry, service directory, update bus, WebSocket hub, event consumer; `orchestrator.live.setup`),
then the job service, health checker, dead-letter service, sweeper and deployment check that use both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from aiohttp import web

from orchestrator.auth import Authenticator
from orchestrator.broker.dead_letter_queues import DeadLetterQueues
from orchestrator.broker.deployment_check import DeploymentCheck, DeploymentSettings
from orchestrator.broker.publisher import TaskPublisher
from orchestrator.http.dead_letter_routes import add_dead_letter_routes
from orchestrator.http.errors import error_middleware, metrics_middleware
from orchestrator.http.health import HealthChecker
from orchestrator.http.job_routes import add_job_routes
from orchestrator.http.request import MAX_BATCH_BODY_BYTES
from orchestrator.http.state import AUTHENTICATOR, DEAD_LETTERS, HEALTH, JOBS, METRICS, PUBLISHER
from orchestrator.http.system_routes import add_system_routes
from orchestrator.jobs.dead_letter_replay import DeadLetterService
from orchestrator.jobs.recovery import JobRecovery
from orchestrator.jobs.service import JobService
from orchestrator.jobs.sweeper import Sweeper, SweeperSettings
from orchestrator.live.setup import LIVE, live_status, setup_live
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.models import CancelResult
from orchestrator.store.task_owners import TaskOwners
from protocol.codec import CodecSet
from protocol.settings import Settings

SHUTDOWN_TIMEOUT_SECONDS = 10.0


def create_app(
    settings: Settings,
    *,
    metrics: OrchestratorMetrics | None = None,
    authenticator: Authenticator | None = None,
    sweeper: SweeperSettings | None = None,
    deployment: DeploymentSettings | None = None,
) -> web.Application:
    """The application; `authenticator` is passed by `__main__`, which prints the dev key it made."""
    sweeper_settings = sweeper or SweeperSettings()
    deployment_settings = deployment or DeploymentSettings()
    metrics = metrics or OrchestratorMetrics()
    if authenticator is None:
        authenticator, _ = Authenticator.from_settings(settings)
    codecs = CodecSet(settings.max_message_bytes)
    # read_json enforces the per-route caps; this is aiohttp's own backstop for request.read().
    app = web.Application(client_max_size=MAX_BATCH_BODY_BYTES, middlewares=[metrics_middleware, error_middleware])
    app[METRICS] = metrics
    app[AUTHENTICATOR] = authenticator
    publisher = TaskPublisher(settings.rabbitmq_url, codecs)
    app[PUBLISHER] = publisher

    async def publisher_ctx(app: web.Application) -> AsyncIterator[None]:
        await publisher.start()
        yield
        await publisher.close()

    async def cancel_job(tenant_id: str, job_id: str) -> CancelResult:
        # Looked up per call: the job service exists only once the application has started.
        return await app[JOBS].cancel(tenant_id, job_id)

    app.cleanup_ctx.append(publisher_ctx)
    setup_live(
        app,
        settings=settings,
        metrics=metrics,
        authenticator=authenticator,
        cancel_job=cancel_job,
        codecs=codecs,
        events_queue=deployment_settings.events_queue,
    )

    async def jobs_ctx(app: web.Application) -> AsyncIterator[None]:
        live = app[LIVE]
        app[JOBS] = JobService(live.registry, live.directory, live.bus, publisher, metrics)
        deployment_check = DeploymentCheck(live.redis, publisher.queue_stats, deployment_settings)
        app[HEALTH] = HealthChecker(
            publisher,
            live.registry,
            live.directory,
            metrics,
            live_status=lambda: replace(live_status(live), deployment=deployment_check.health),
        )
        recovery = JobRecovery(live.redis)
        app[DEAD_LETTERS] = DeadLetterService(
            DeadLetterQueues(publisher, codecs), recovery, publisher, live.bus, TaskOwners(live.redis)
        )
        sweeper = Sweeper(live.redis, recovery, live.directory, publisher, live.bus, metrics, sweeper_settings)
        await sweeper.start()
        deployment_check.start()
        yield
        await deployment_check.stop()
        await sweeper.stop()

    app.cleanup_ctx.append(jobs_ctx)
    add_job_routes(app)
    add_dead_letter_routes(app)
    add_system_routes(app)
    return app
