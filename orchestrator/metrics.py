"""Prometheus metrics of one orchestrator process, on its own CollectorRegistry."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


class FlowLimitFigures(Protocol):
    """One service's flow limit figures (the health report's `limits`)."""

    @property
    def max_concurrency(self) -> int | None: ...
    @property
    def running(self) -> int: ...
    @property
    def waits(self) -> Mapping[str, int]: ...
    @property
    def wait_seconds(self) -> Mapping[str, float]: ...


class OrchestratorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs_created = Counter("baton_jobs_created", "Jobs accepted", ["type"], registry=r)
        self.jobs_finished = Counter(
            "baton_jobs_finished", "Jobs that reached a terminal status", ["type", "status"], registry=r
        )
        self.job_duration = Histogram(
            "baton_job_duration_seconds",
            "From creation to terminal status",
            ["type", "status"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
            registry=r,
        )
        self.cache_hits = Counter("baton_cache_hits", "Jobs answered from the result cache", ["type"], registry=r)
        self.cache_misses = Counter(
            "baton_cache_misses", "Cache-enabled jobs run because no stored result matched", ["type"], registry=r
        )
        self.cache_coalesced = Counter(
            "baton_cache_coalesced", "Requests attached to an identical job still running", ["type"], registry=r
        )
        # Read from Redis at scrape, so every replica reports the same total.
        self.cache_entries = Gauge(
            "baton_cache_entries", "Result-cache entries not expired, every tenant's", registry=r
        )
        self.jobs_swept = Counter("baton_jobs_swept", "Stuck jobs the sweeper resolved", ["action"], registry=r)
        self.publish_failures = Counter("baton_publish_failures", "Task publishes that failed", ["reason"], registry=r)
        self.events_applied = Counter("baton_events_applied", "Events applied to the registry", ["event"], registry=r)
        self.events_dropped = Counter("baton_events_dropped", "Events not applied", ["reason"], registry=r)
        self.queue_depth = Gauge(
            "baton_queue_depth_messages",
            "Ready messages per service, in its queue and its tenant lanes",
            ["queue"],
            registry=r,
        )
        self.queue_consumers = Gauge("baton_queue_consumers", "Consumers per service queue", ["queue"], registry=r)
        self.dead_letter_depth = Gauge(
            "baton_dead_letter_depth", "Messages parked in a service's dead-letter queue", ["service"], registry=r
        )
        self.live_workers = Gauge(
            "baton_live_workers", "Worker processes with a recent heartbeat", ["service"], registry=r
        )
        # Read from the breaker reports of the service's live workers at each scrape.
        self.breaker_state = Gauge(
            "baton_circuit_breaker_state",
            "Circuit breaker of a service's workers on an upstream target: 0 closed, 1 half-open, 2 open "
            "(the worst over its live worker processes)",
            ["service", "target"],
            registry=r,
        )
        self.breaker_openings = Gauge(
            "baton_circuit_breaker_openings",
            "Times the breaker opened, summed over the service's live worker processes (each since it started)",
            ["service", "target"],
            registry=r,
        )
        self.ws_connections = Gauge("baton_websocket_connections", "Open client WebSockets", registry=r)
        self.ws_messages_sent = Counter(
            "baton_websocket_messages_sent", "Messages sent to WebSocket clients", registry=r
        )
        self.ws_clients_dropped = Counter(
            "baton_websocket_clients_dropped", "Clients cut off because their buffer was full", registry=r
        )
        # Tenants are those of the configured keys: the label's values are bounded.
        self.quota_rejections = Counter(
            "baton_quota_rejections",
            "Job creation requests refused over the tenant's quota",
            ["tenant", "kind"],
            registry=r,
        )
        self.ws_refusals = Counter(
            "baton_websocket_refusals",
            "WebSockets refused or closed by a limit (tenant_cap, process_cap, unauthenticated_cap, origin, "
            "message_rate)",
            ["reason"],
            registry=r,
        )
        self.http_requests = Counter("baton_http_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.http_duration = Histogram(
            "baton_http_request_duration_seconds", "HTTP request time", ["route"], registry=r
        )
        self.executions_started = Counter(
            "baton_workflow_executions_started", "Workflow executions started by this replica", ["workflow"], registry=r
        )
        # A failed execution retried and then completed is counted twice: once per way it finished.
        self.executions_finished = Counter(
            "baton_workflow_executions_finished",
            "Workflow executions that reached a terminal status, counted by the replica that stored it",
            ["workflow", "status"],
            registry=r,
        )
        self.step_duration = Histogram(
            "baton_workflow_step_duration_seconds",
            "From a step attempt's start (its send when no start was reported) to its outcome",
            ["workflow", "step", "status"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600),
            registry=r,
        )
        # Read from Redis, so every replica reports the same total (not what it alone started).
        self.executions_running = Gauge(
            "baton_workflow_executions_running",
            "Workflow executions started and not finished (queued, running or paused), over every replica",
            registry=r,
        )

        self._flow_limits: Mapping[str, FlowLimitFigures] = {}
        r.register(_FlowLimitsCollector(lambda: self._flow_limits))

    def show_flow_limits(self, by_service: Mapping[str, FlowLimitFigures]) -> None:
        """The services' flow limit figures as of the latest health report (kept in Redis by the workers)."""
        self._flow_limits = by_service

    def job_finished(self, job_type: str, status: str, created_at: str) -> None:
        """Count a job that reached a terminal status, and the time since its creation (ISO-8601)."""
        self.jobs_finished.labels(type=job_type, status=status).inc()
        with contextlib.suppress(ValueError):
            elapsed = (datetime.now(UTC) - datetime.fromisoformat(created_at)).total_seconds()
            self.job_duration.labels(type=job_type, status=status).observe(max(elapsed, 0.0))

    def execution_started(self, workflow_id: str) -> None:
        self.executions_started.labels(workflow=workflow_id).inc()

    def execution_finished(self, workflow_id: str, status: str) -> None:
        self.executions_finished.labels(workflow=workflow_id, status=status).inc()

    def step_finished(self, workflow_id: str, step: str, status: str, seconds: float) -> None:
        self.step_duration.labels(workflow=workflow_id, step=step, status=status).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _FlowLimitsCollector:
    """Counters whose totals live in Redis (every worker process adds to them): exposed as read, not counted here."""

    def __init__(self, latest: Callable[[], Mapping[str, FlowLimitFigures]]) -> None:
        self._latest = latest

    def collect(self) -> Iterator[Metric]:
        waits = CounterMetricFamily(
            "baton_flow_limit_waits", "Tasks that waited for a flow limit", labels=["service", "limit"]
        )
        seconds = CounterMetricFamily(
            "baton_flow_limit_wait_seconds", "Time tasks waited for a flow limit", labels=["service", "limit"]
        )
        running = GaugeMetricFamily(
            "baton_flow_limit_running", "Tasks holding a concurrency lease, over every worker", labels=["service"]
        )
        for service, limits in self._latest().items():
            for limit, count in limits.waits.items():
                waits.add_metric([service, limit], count)
            for limit, total in limits.wait_seconds.items():
                seconds.add_metric([service, limit], total)
            if limits.max_concurrency is not None:
                running.add_metric([service], limits.running)
        yield from (waits, seconds, running)
