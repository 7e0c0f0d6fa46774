"""WorkerRuntime: wires the pieces for one Worker in one process, starts them, stops them in reverse;
`run_worker` runs it until SIGTERM/SIGINT asks for a graceful stop."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

import aiohttp
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import CollectorRegistry

from plumbing.amqp import AMQP_ERRORS
from plumbing.log_context import bind_log_context
from plumbing.tracing import Tracing
from protocol.codec import CodecSet
from protocol.control import LaneOpened
from protocol.topology import declare_service
from workers.breaker import BreakerPolicy, CircuitBreakers
from workers.config import WorkerSettings
from workers.errors import BrokerError, ConfigurationError
from workers.http import HttpPolicy
from workers.runtime.announcer import WorkflowAnnouncer
from workers.runtime.attempt import AttemptDeps, AttemptRunner
from workers.runtime.breaker_reporter import BreakerReporter
from workers.runtime.broker import AmqpPublisher, connect, open_channel, redact
from workers.runtime.cancellations import CancelledJobs, ControlListener
from workers.runtime.child_jobs import OrchestratorJobs
from workers.runtime.consumer import TaskConsumer
from workers.runtime.event_publisher import EventPublisher
from workers.runtime.executions import Executions, TimeLimits
from workers.runtime.fair_slots import FairSlots, TenantPolicy
from workers.runtime.flow_gate import FlowGate, resolve_limits
from workers.runtime.flow_store import FlowLimitStore
from workers.runtime.forwarding import DeadLetterer, Rescheduler
from workers.runtime.heartbeat import Heartbeat
from workers.runtime.ids_and_spans import TaskTelemetry
from workers.runtime.lanes import LaneDirectory
from workers.runtime.late_running import LATE_RUNNING_SECONDS
from workers.runtime.ledger import TaskLedger
from workers.runtime.metrics_server import MetricsServer
from workers.runtime.replies import ChildTaskCaller, ReplyRouter
from workers.runtime.runner import RunnerDeps, RunnerStats, TaskRunner
from workers.runtime.worker_metrics import ProcessGauges, WorkerMetrics
from workers.sdk import Worker

log = logging.getLogger(__name__)

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


def new_worker_id(service: str) -> str:
    return f"{service}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def _scaled_prefetch(worker: Worker, concurrency: int) -> int:
    """The Worker's prefetch, scaled by the same factor when the concurrency was overridden."""
    return max(1, math.ceil(worker.prefetch * concurrency / worker.concurrency))


class WorkerRuntime:
    """Runs one Worker: `await start()`, then `await stop()` (or `async with`)."""

    def __init__(
        self,
        worker: Worker,
        settings: WorkerSettings,
        *,
        worker_id: str | None = None,
        tracing: Tracing | None = None,
        late_running_seconds: float = LATE_RUNNING_SECONDS,
    ) -> None:
        if not worker.handlers:
            raise ConfigurationError(f"worker {worker.service!r} has no handlers")
        self.worker = worker
        self.settings = settings
        self.worker_id = worker_id or new_worker_id(worker.service)
        self.telemetry = TaskTelemetry(worker.service, self.worker_id, tracing)
        # A constant in production; a test of the late running event shortens it.
        self.late_running_seconds = late_running_seconds
        self.concurrency = settings.concurrency or worker.concurrency
        self.prefetch = settings.prefetch or _scaled_prefetch(worker, self.concurrency)
        self.executions = Executions()
        # Resolved here, so a capped time limit is reported when the worker starts, not on its first task.
        self.time_limits = TimeLimits(worker, settings.consumer_timeout_seconds)
        self.flow_limits = resolve_limits(worker, settings)
        self.stats = RunnerStats()
        # A registry per runtime (one per process), so that tests running several never share counters.
        self.metrics = WorkerMetrics(worker.service, frozenset(worker.job_types), CollectorRegistry(auto_describe=True))
        self.metrics.show(
            ProcessGauges(
                in_flight=lambda: self.in_flight,
                unacked=lambda: self._consumer.unacked if self._consumer is not None else 0,
                prefetch_window=lambda: self.prefetch * (self._consumer.consumed_queues if self._consumer else 0),
                concurrency=self.concurrency,
            )
        )
        metrics_port = worker.metrics_port if settings.metrics_port is None else settings.metrics_port
        self.metrics_server = MetricsServer(self.metrics, settings.metrics_host, metrics_port) if metrics_port else None
        # One per process: every task's calls to a target share its breaker.
        self.breakers = CircuitBreakers(
            BreakerPolicy(
                failure_threshold=settings.breaker_failure_threshold,
                cooldown_seconds=settings.breaker_cooldown_seconds,
                max_targets=settings.breaker_max_targets,
            )
        )
        self._codecs = CodecSet(max_bytes=settings.max_message_bytes)
        self._ledger: TaskLedger | None = None
        self._flow_store: FlowLimitStore | None = None
        self.flow_gate: FlowGate | None = None
        self._lanes: LaneDirectory | None = None
        self._connection: AbstractRobustConnection | None = None
        self._http: aiohttp.ClientSession | None = None
        self._consumer: TaskConsumer | None = None
        self._heartbeat: Heartbeat | None = None
        self._stopped = False

    async def __aenter__(self) -> WorkerRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def in_flight(self) -> int:
        return len(self.executions)

    @property
    def lanes(self) -> frozenset[str]:
        """The tenants whose lane of the service this process consumes."""
        return self._consumer.lanes if self._consumer is not None else frozenset()

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self._close()
            raise

    async def _start(self) -> None:
        service = self.worker.service
        if self.metrics_server is not None:
            await self.metrics_server.start()  # first: a port in use fails the start before anything else
        self._connection = await connect(
            self.settings.rabbitmq_url, f"baton-worker:{self.worker_id}", self.settings.connect_timeout_seconds
        )
        consume_channel = await open_channel(self._connection, prefetch=self.prefetch, confirms=False)
        publish_channel = await open_channel(self._connection)
        try:
            await declare_service(publish_channel, service)
        except AMQP_ERRORS as exc:
            raise BrokerError(f"cannot declare the topology of {service!r}: {exc}") from exc

        amqp = AmqpPublisher(publish_channel)
        events = EventPublisher(amqp, self._codecs, self.telemetry, batch_outcomes=self.worker.batch_outcomes)
        router = ReplyRouter(f"baton.reply.{self.worker_id}", self._codecs)
        await router.start(consume_channel)
        cancelled = CancelledJobs()
        await ControlListener(
            f"baton.control.{self.worker_id}", self._codecs, cancelled, self.executions, self._lane_opened
        ).start(consume_channel)
        self._http = aiohttp.ClientSession()
        self._ledger = TaskLedger(self.settings.redis_url)
        if self.flow_limits:
            self._flow_store = FlowLimitStore(self.settings.redis_url, service, self.flow_limits)
            await self._flow_store.start()
            self.flow_gate = FlowGate(self._flow_store, cancelled)
        attempts = AttemptRunner(
            AttemptDeps(
                settings=self.settings,
                events=events,
                executions=self.executions,
                cancelled=cancelled,
                caller=ChildTaskCaller(amqp, router, self._codecs, self.telemetry),
                jobs=OrchestratorJobs(self.settings.orchestrator_url, service, self.settings.service_token(service)),
                http_session=self._http,
                http_policy=HttpPolicy(
                    timeout_seconds=self.settings.http_timeout_seconds,
                    max_retries=self.settings.http_retries,
                    max_retry_after_seconds=self.settings.http_max_retry_after_seconds,
                ),
                breakers=self.breakers,
                track_started=self.worker.track_started_for,
                late_running_seconds=self.late_running_seconds,
                telemetry=self.telemetry,
            )
        )
        runner = TaskRunner(
            RunnerDeps(
                worker=self.worker,
                codecs=self._codecs,
                events=events,
                attempts=attempts,
                dead_letters=DeadLetterer(amqp, service),
                rescheduler=Rescheduler(amqp, self._codecs),
                ledger=self._ledger,
                limits=self.time_limits,
                cancelled=cancelled,
                observer=self.metrics,
                flow_gate=self.flow_gate,
            ),
            self.stats,
        )
        self._heartbeat = Heartbeat(
            worker_id=self.worker_id,
            worker=self.worker,
            concurrency=self.concurrency,
            interval_seconds=self.settings.heartbeat_seconds,
            in_flight=lambda: self.in_flight,
            events=events,
            announcer=WorkflowAnnouncer(worker_id=self.worker_id, worker=self.worker, events=events),
            breakers=BreakerReporter(worker_id=self.worker_id, service=service, breakers=self.breakers, events=events),
        )
        self._lanes = LaneDirectory(self.settings.redis_url)
        policy = TenantPolicy.from_settings(self.settings.tenant_weights, self.settings.tenant_max_running)
        self._consumer = TaskConsumer(
            service,
            runner,
            self.executions,
            FairSlots(self.concurrency, policy),
            self._lanes,
            lane_refresh_seconds=self.settings.lane_refresh_seconds,
            telemetry=self.telemetry,
        )
        await self._consumer.start(consume_channel)
        await self._heartbeat.start()
        log.info(
            "worker %s serving %s on %s and %d tenant lane(s) (concurrency %d, prefetch %d each; "
            "limits over all processes: %s) via %s",
            self.worker_id,
            ", ".join(self.worker.job_types),
            self._consumer.queue_name,
            len(self._consumer.lanes),
            self.concurrency,
            self.prefetch,
            self.flow_limits,
            redact(self.settings.rabbitmq_url),
        )

    async def _lane_opened(self, lane: LaneOpened) -> None:
        if self._consumer is not None and lane.service == self.worker.service:
            await self._consumer.open_lane(lane.tenant_id)

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Drain (in-flight tasks finish within the grace period, the rest are requeued), say goodbye, close."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.settings.shutdown_grace_seconds if grace_seconds is None else grace_seconds
        try:
            if self._consumer is not None:
                consumer_stopped = asyncio.ensure_future(self._consumer.stop(grace))
                if self.flow_gate is not None:
                    # Tasks waiting for a flow limit never started: handed back at once, not after the grace
                    # period. After the consumer's first step (its cancel is on the way): a copy handed back
                    # before the broker stops delivering comes straight back here, and is handed back again.
                    await asyncio.sleep(0)
                    self.flow_gate.stop_waiting()
                await consumer_stopped
            if self._heartbeat is not None:
                await self._heartbeat.stop()
        finally:
            await self._close()
        log.info("worker %s stopped", self.worker_id)

    async def _close(self) -> None:
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._ledger is not None:
            await self._ledger.close()
            self._ledger = None
        if self._flow_store is not None:
            await self._flow_store.close()
            self._flow_store = None
        if self._lanes is not None:
            await self._lanes.close()
            self._lanes = None
        if self._connection is not None:
            try:
                await self._connection.close()
            except AMQP_ERRORS as exc:
                log.warning("closing the broker connection failed: %s", exc)
            self._connection = None


async def run_worker(worker: Worker, settings: WorkerSettings, *, tracing: Tracing | None = None) -> int:
    """The process's main coroutine: run until SIGTERM/SIGINT, then stop gracefully; the exit code."""
    stop_requested = asyncio.Event()
    runtime = WorkerRuntime(worker, settings, tracing=tracing)
    # Every record of the process names it; tasks started from here on inherit the ids.
    bind_log_context(service=worker.service, worker_id=runtime.worker_id)
    with stop_on_signals(stop_requested.set):
        try:
            await runtime.start()
        except (BrokerError, ConfigurationError) as exc:
            log.error("cannot start worker %s: %s", worker.service, exc)
            return 1
        try:
            await stop_requested.wait()
        finally:
            await runtime.stop()
    return 0


@contextmanager
def stop_on_signals(request_stop: Callable[[], None]) -> Iterator[None]:
    """Route SIGTERM/SIGINT to `request_stop` while the block runs, then restore the defaults."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        log.info("%s received: stopping gracefully", sig.name)
        request_stop()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
