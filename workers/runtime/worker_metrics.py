"""Prometheus metrics of one worker process (the runner's TaskObserver), on a CollectorRegistry of its own
(never the global default).

What is counted, per service and job type:
- `baton_worker_tasks_total{outcome}`: each task outcome this process published: completed, failed,
  timed_out, cancelled, dead_lettered (parked in the dead-letter queue; its job fails), and retried
  (an attempt that failed or was lost and whose next attempt was published). A task ends with one of the
  first five, after any number of retried.
- `baton_worker_handler_duration_seconds`: one observation per attempt run (handler and its checks).
- `baton_worker_queue_wait_seconds`: from the envelope's created_at to the attempt's start, first attempts
  only (a retry keeps its job's created_at, so its wait would include its backoff).
Read at each scrape: tasks in flight, unacked deliveries against the prefetch window, the concurrency.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from plumbing.metric_series import LabelledSeries
from protocol.envelope import TaskEnvelope
from workers.runtime.bounded_map import BoundedMap

# A job type no handler of this worker serves (a misrouted or forged task): one label value for all of them,
# so a stream of made-up types cannot grow /metrics without bound.
OTHER_TYPE: Final[str] = "other"
REMEMBERED_PARKED: Final[int] = 10_000

DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800)
WAIT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class TaskOutcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    DEAD_LETTERED = "dead_lettered"
    RETRIED = "retried"


_TERMINAL: Final[frozenset[str]] = frozenset(
    {TaskOutcome.COMPLETED, TaskOutcome.FAILED, TaskOutcome.TIMED_OUT, TaskOutcome.CANCELLED}
)


@dataclass(frozen=True)
class ProcessGauges:
    """Figures the runtime reads at each scrape."""

    in_flight: Callable[[], int]
    unacked: Callable[[], int]
    prefetch_window: Callable[[], int]
    concurrency: int


class WorkerMetrics:
    def __init__(self, service: str, job_types: frozenset[str], registry: CollectorRegistry) -> None:
        self.service = service
        self.registry = registry
        self._job_types = job_types
        self.tasks = Counter(
            "baton_worker_tasks",
            "Task outcomes published by this worker process",
            ["service", "type", "outcome"],
            registry=registry,
        )
        self.handler_duration = Histogram(
            "baton_worker_handler_duration_seconds",
            "Time one attempt of a task ran in this process",
            ["service", "type"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "baton_worker_queue_wait_seconds",
            "From the task's creation to the start of its first attempt",
            ["service", "type"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        # Task id -> attempt parked as a dead letter, until its job's failure is published.
        self._parked: BoundedMap[str, int] = BoundedMap(REMEMBERED_PARKED)
        # Looked up once per label values (three lookups per task); type labels are the handlers' types and OTHER_TYPE.
        self._waits = LabelledSeries(self.queue_wait)
        self._durations = LabelledSeries(self.handler_duration)
        self._counts = LabelledSeries(self.tasks)

    def show(self, gauges: ProcessGauges) -> None:
        """Expose the process's own figures, read at each scrape; once per registry."""
        self.registry.register(_ProcessCollector(self.service, gauges))

    def type_label(self, job_type: str) -> str:
        return job_type if job_type in self._job_types else OTHER_TYPE

    def attempt_started(self, envelope: TaskEnvelope) -> None:
        if envelope.attempt != 1:
            return
        waited = (datetime.now(UTC) - envelope.created_at).total_seconds()
        self._waits.get(self.service, self.type_label(envelope.type)).observe(max(waited, 0.0))

    def attempt_ran(self, envelope: TaskEnvelope, seconds: float) -> None:
        self._durations.get(self.service, self.type_label(envelope.type)).observe(seconds)

    def retried(self, envelope: TaskEnvelope) -> None:
        self._count(envelope.type, TaskOutcome.RETRIED)

    def parked(self, envelope: TaskEnvelope | None) -> None:
        """With a job, its failure event follows and is counted as dead_lettered then (`finished`);
        without one (a message that did not decode) it is counted now."""
        if envelope is None:
            self._count(OTHER_TYPE, TaskOutcome.DEAD_LETTERED)
        else:
            self._parked.put(envelope.task_id, envelope.attempt)

    def finished(self, envelope: TaskEnvelope, status: str) -> None:
        if self._parked.pop(envelope.task_id) is not None:
            self._count(envelope.type, TaskOutcome.DEAD_LETTERED)
        elif status in _TERMINAL:
            self._count(envelope.type, TaskOutcome(status))

    def _count(self, job_type: str, outcome: TaskOutcome) -> None:
        self._counts.get(self.service, self.type_label(job_type), outcome.value).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ProcessCollector:
    def __init__(self, service: str, gauges: ProcessGauges) -> None:
        self._service = service
        self._gauges = gauges

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected at each scrape only: registering it must not call the callables

    def collect(self) -> Iterator[Metric]:
        g = self._gauges
        for name, text, value in (
            ("baton_worker_in_flight", "Task attempts running in this process", g.in_flight()),
            ("baton_worker_unacked_deliveries", "Deliveries received and not yet settled", g.unacked()),
            (
                "baton_worker_prefetch_limit",
                "Unacked deliveries the broker may hand this process (prefetch times queues consumed)",
                g.prefetch_window(),
            ),
            ("baton_worker_concurrency", "Task attempts this process runs at once at most", g.concurrency),
        ):
            family = GaugeMetricFamily(name, text, labels=["service"])
            family.add_metric([self._service], value)
            yield family
