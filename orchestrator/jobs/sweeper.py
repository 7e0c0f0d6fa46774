"""Sweeper: resolves jobs that no worker will ever finish.

Every replica runs one, but only the holder of a Redis lock (with expiry, renewed each round)
sweeps, so one replica at a time does the work and another takes over within the lock's
lifetime when it dies. A round looks at jobs that have been `queued`, or `running`/`retrying`,
for longer than their bound without an event:

- queued, a live worker for the service, and no ready message anywhere in the service's
  queues (work queue and retry delay queues): the message was lost, so the stored envelope is
  published again as a new attempt;
- running or retrying with no live worker for the service: the worker died with the task, so
  the job fails with error_type "Stuck", and its cancelled ledger key is set so a late
  delivery of its task never runs.

Everything else is left alone: a backlog is not a loss, a queued job whose service has no
worker right now waits in its queue for one (DESIGN "Routing"), and a long handler with a live
worker is bounded by the worker's own time limit. Each verdict is applied only if the job is still
exactly as the sweeper saw it (same seq), so an event arriving meanwhile wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import redis.asyncio as aioredis
from pydantic import ValidationError

from orchestrator.errors import BrokerError, BrokerUnavailable, RegistryError, RegistryUnavailable, UnpublishableJob
from orchestrator.jobs.ports import JobCounters, ServiceLookup, TaskPublisher, UpdateBus
from orchestrator.jobs.recovery import JobRecovery, ReopenStatus
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.models import JobRecord, JobUpdate
from orchestrator.settings import SweeperSettings
from orchestrator.store.registry import redis_errors
from plumbing.cancellation import cancel_and_wait
from protocol.control import CancelCommand
from protocol.envelope import TaskEnvelope, utc_now
from protocol.events import JobStatus
from protocol.services import WORKFLOW_SERVICE
from protocol.topology import RETRY_DELAY_TIERS_MS, retry_queue, task_queue

log = logging.getLogger(__name__)

LOST_MESSAGE_REASON: Final[str] = "republished: the task message was lost"

# KEYS: lock; ARGV: token, ttl ms. Take the lock, or extend it when this replica holds it already.
_LEAD: Final[str] = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
# KEYS: lock; ARGV: token. Let go only of our own lock.
_RELEASE: Final[str] = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class SweepReport:
    failed: list[str] = field(default_factory=list)  # job ids
    republished: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # job ids whose resolution raised


class Sweeper:
    def __init__(
        self,
        redis: aioredis.Redis,
        recovery: JobRecovery,
        directory: ServiceLookup,
        publisher: TaskPublisher,
        bus: UpdateBus,
        metrics: OrchestratorMetrics,
        settings: SweeperSettings,
        stats: JobCounters | None = None,
    ) -> None:
        self._stats = stats
        self._redis = redis
        self._recovery = recovery
        self._directory = directory
        self._publisher = publisher
        self._bus = bus
        self._metrics = metrics
        self._settings = settings
        self._token = secrets.token_hex(16)
        self._lead = redis.register_script(_LEAD)
        self._release = redis.register_script(_RELEASE)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="baton-sweeper")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        await cancel_and_wait(task)
        # Hand the lock over at once rather than after its expiry.
        with contextlib.suppress(RegistryError), redis_errors("releasing the sweeper lock"):
            await self._release(keys=[self._settings.lock_key], args=[self._token])

    async def lead(self) -> bool:
        """Whether this replica sweeps this round (takes or renews the lock)."""
        ttl_ms = int(self._settings.lock_ttl_seconds * 1000)
        with redis_errors("taking the sweeper lock"):
            return bool(await self._lead(keys=[self._settings.lock_key], args=[self._token, ttl_ms]))

    async def sweep_once(self) -> SweepReport:
        """One round over every stale job; the caller must hold the lock (see `lead`)."""
        report = SweepReport()
        round_ = _Round()
        bounds = (
            (JobStatus.QUEUED, self._settings.queued_stale_seconds),
            (JobStatus.RUNNING, self._settings.running_stale_seconds),
            (JobStatus.RETRYING, self._settings.running_stale_seconds),
        )
        for status, bound in bounds:
            now = time.time()
            tenants = self._settings.tenants
            for tenant in sorted(tenants) if tenants is not None else await self._recovery.tenants_with(status):
                for record in await self._recovery.stale_jobs(tenant, status, now - bound, self._settings.batch):
                    idle = _idle_seconds(record)
                    if idle >= bound:
                        await self._resolve_one(record, idle, round_, report)
        return report

    async def _resolve_one(self, record: JobRecord, idle: float, round_: _Round, report: SweepReport) -> None:
        """One job's trouble never ends the round for the others; Redis or RabbitMQ being down does."""
        try:
            await self._resolve(record, idle, round_, report)
        except (RegistryUnavailable, BrokerUnavailable):
            raise
        except Exception:
            report.errors.append(record.job_id)
            self._metrics.jobs_swept.labels(action="error").inc()
            log.exception("sweeper: job %s of tenant %s could not be resolved", record.job_id, record.tenant_id)

    async def _run(self) -> None:
        while True:
            try:
                if await self.lead():
                    report = await self.sweep_once()
                    if report.failed or report.republished:
                        log.info(
                            "sweeper: failed %d stuck jobs, republished %d", len(report.failed), len(report.republished)
                        )
            except (RegistryError, BrokerError) as exc:
                log.warning("sweeper round skipped: %s", exc)
            except Exception:
                log.exception("sweeper round failed")  # the next round must still happen
            await asyncio.sleep(self._settings.interval_seconds)

    async def _resolve(self, record: JobRecord, idle: float, round_: _Round, report: SweepReport) -> None:
        service = record.service
        if service == WORKFLOW_SERVICE:
            return  # a workflow execution: its engine's outbox recovery resends what a dead replica owed
        if service not in round_.live:
            round_.live[service] = len(await self._directory.live_workers(service))
        live = round_.live[service]
        if record.status == JobStatus.QUEUED:
            if not live:
                return  # waits in its queue for a worker; whether its message is lost is asked once one is live
            if service not in round_.pending:
                round_.pending[service] = await self._pending_messages(service)
            if round_.pending[service] != 0:
                return  # waiting behind a backlog, or the broker cannot tell: not lost
            if await self._republish(record):
                report.republished.append(record.job_id)
            return
        if live:
            return  # a worker is there; its time limit bounds a long handler
        reason = f"no live worker for service {service!r}; {record.status} for {idle:.0f} s without an event"
        if await self._fail(record, reason):
            report.failed.append(record.job_id)

    async def _pending_messages(self, service: str) -> int | None:
        """Messages of the service in its work queue, tenant lanes and retry queues; None when the
        broker (or the lane set) cannot say."""
        try:
            lanes = (await self._publisher.lane_queues([service]))[service]
            queues = [task_queue(service), *lanes, *(retry_queue(service, ms) for ms in RETRY_DELAY_TIERS_MS)]
            stats = await self._publisher.queue_stats(queues)
        except (BrokerError, RegistryError) as exc:
            log.warning("sweeper: cannot count %s's messages: %s", service, exc)
            return None
        return sum(s.messages for s in stats.values() if s is not None)

    async def _republish(self, record: JobRecord) -> bool:
        stored = await self._recovery.stored_envelope(record.tenant_id, record.job_id)
        if stored is None:
            return await self._fail(record, "the task message was lost and the job has no stored envelope")
        try:
            envelope = TaskEnvelope.model_validate(stored)
            self._publisher.encode_task(envelope)  # before reopening: a new attempt that cannot be sent is no fix
        except (ValidationError, UnpublishableJob) as exc:
            return await self._fail(record, f"the task message was lost and cannot be sent again: {exc}")
        reopened = await self._recovery.reopen(envelope, reason=LOST_MESSAGE_REASON, expected_seq=record.seq)
        if reopened.status is not ReopenStatus.REOPENED or reopened.envelope is None:
            return False  # an event moved the job meanwhile
        await self._announce(reopened.update)
        try:
            await self._publisher.publish_task(reopened.envelope)
        except BrokerError as exc:
            log.warning("sweeper: job %s reopened but its task was not published: %s", record.job_id, exc)
            return False
        self._metrics.jobs_swept.labels(action="republished").inc()
        return True

    async def _fail(self, record: JobRecord, reason: str) -> bool:
        update = await self._recovery.fail_stuck(record, reason)
        if update is None:
            return False
        self._metrics.jobs_swept.labels(action="failed").inc()
        self._metrics.job_finished(record.type, JobStatus.FAILED.value, record.created_at)
        if self._stats is not None:
            self._stats.job_finished(record.tenant_id, record.service, JobStatus.FAILED.value, record.created_at)
        await self._announce(update)
        try:
            # The ledger key already stops a later delivery; this stops a handler still running somewhere.
            await self._publisher.publish_cancel(
                CancelCommand(tenant_id=record.tenant_id, global_task_id=record.job_id, reason=reason)
            )
        except BrokerError as exc:
            log.warning("sweeper: cancel broadcast for job %s failed: %s", record.job_id, exc)
        return True

    async def _announce(self, update: JobUpdate | None) -> None:
        if update is None:
            return
        try:
            await self._bus.publish(update)
        except RegistryError as exc:
            log.warning("sweeper: job %s changed but not announced: %s", update.job_id, exc)


@dataclass
class _Round:
    """What one round learned per service, asked once per round."""

    live: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int | None] = field(default_factory=dict)


def _idle_seconds(record: JobRecord) -> float:
    try:
        return (utc_now() - datetime.fromisoformat(record.updated_at)).total_seconds()
    except ValueError:
        return 0.0
