"""The tasks this process is running right now, their time limits, and the one way to interrupt them.

Time limits are kept below RabbitMQ's consumer timeout. The broker closes a channel whose
consumer holds a delivery unacked past `consumer_timeout`, and every task on that channel dies
with it. A delivery's clock starts when the broker hands it over (it may wait for a concurrency
slot first), so the budget of one run is the cap minus the time already spent since delivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator
from datetime import datetime
from enum import StrEnum
from typing import Any

from protocol.envelope import TaskEnvelope, utc_now
from workers.errors import DeadlineExceeded, TimeLimitExceeded
from workers.sdk import Worker

log = logging.getLogger(__name__)


class StopReason(StrEnum):
    CANCELLED = "cancelled"  # the job was cancelled: report task_cancelled
    SHUTDOWN = "shutdown"  # the process is stopping: give the message back to the queue


class Interrupted(Exception):
    """The handler was stopped on purpose; `reason` says why and `detail` what the requester said."""

    def __init__(self, reason: StopReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class Execution:
    """One task being handled; created before the handler starts so a cancel can never slip in between."""

    def __init__(self, envelope: TaskEnvelope) -> None:
        self.envelope = envelope
        self._task: asyncio.Task[Any] | None = None
        self._stop: tuple[StopReason, str] | None = None

    @property
    def stop_requested(self) -> tuple[StopReason, str] | None:
        return self._stop

    def stop(self, reason: StopReason, detail: str) -> None:
        if self._stop is None:
            self._stop = (reason, detail)
        if self._task is not None:
            self._task.cancel()

    async def run(self, handler: Awaitable[Any], time_limit: float) -> Any:
        """Run the handler in its own task, bounded by the deadline and the time limit (seconds).

        Raises Interrupted after stop(), DeadlineExceeded when the deadline passes first,
        TimeLimitExceeded when the time limit does; the handler's own exceptions pass through.
        """
        if self._stop is not None:
            _close(handler)
            raise Interrupted(*self._stop)
        remaining = seconds_until(self.envelope.deadline)
        deadline_first = remaining is not None and remaining <= time_limit
        self._task = asyncio.ensure_future(handler)
        try:
            async with asyncio.timeout(remaining if deadline_first else time_limit) as scope:
                return await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._stop is not None and (current is None or not current.cancelling()):
                raise Interrupted(*self._stop) from None
            raise
        except TimeoutError:
            if not scope.expired():
                raise
            if deadline_first:
                raise DeadlineExceeded(f"deadline {self.envelope.deadline} passed while running") from None
            raise TimeLimitExceeded(f"still running after the time limit of {time_limit:g} s") from None


def seconds_until(deadline: datetime | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, (deadline - utc_now()).total_seconds())


def _close(awaitable: Awaitable[Any]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # never started: close it so Python does not warn "coroutine was never awaited"


class Executions:
    """The in-flight executions of this process, by task id."""

    def __init__(self) -> None:
        self._running: dict[str, Execution] = {}

    def __len__(self) -> int:
        return len(self._running)

    def __iter__(self) -> Iterator[Execution]:
        return iter(list(self._running.values()))

    def add(self, envelope: TaskEnvelope) -> Execution:
        execution = Execution(envelope)
        self._running[envelope.task_id] = execution
        return execution

    def remove(self, execution: Execution) -> None:
        if self._running.get(execution.envelope.task_id) is execution:
            del self._running[execution.envelope.task_id]

    def stop_job(self, tenant_id: str, global_task_id: str, detail: str) -> int:
        """Cancel every running task of one job; returns how many were stopped."""
        matched = [
            e
            for e in self._running.values()
            if e.envelope.global_task_id == global_task_id and e.envelope.tenant_id == tenant_id
        ]
        for execution in matched:
            execution.stop(StopReason.CANCELLED, detail)
        return len(matched)

    def stop_all(self, reason: StopReason, detail: str) -> None:
        for execution in list(self._running.values()):
            execution.stop(reason, detail)


def consumer_timeout_margin(consumer_timeout_seconds: float) -> float:
    """Head-room for publishing the outcome and acking: a tenth of the timeout, at most a minute."""
    return min(60.0, consumer_timeout_seconds / 10)


class TimeLimits:
    """The time limit of each job type of a Worker, capped below the consumer timeout."""

    def __init__(self, worker: Worker, consumer_timeout_seconds: float) -> None:
        self.cap = consumer_timeout_seconds - consumer_timeout_margin(consumer_timeout_seconds)
        self._limits: dict[str, float] = {}
        for job_type, spec in worker.handlers.items():
            wanted = worker.time_limit_for(spec)
            if wanted > self.cap:
                log.warning(
                    "handler %s of %s/%s wants a %.0f s time limit; capped to %.0f s, below the broker's "
                    "consumer timeout of %.0f s (raise RabbitMQ's consumer_timeout and BATON_CONSUMER_TIMEOUT_SECONDS "
                    "together to allow longer tasks)",
                    spec.name,
                    worker.service,
                    job_type,
                    wanted,
                    self.cap,
                    consumer_timeout_seconds,
                )
            self._limits[job_type] = min(wanted, self.cap)

    def for_job_type(self, job_type: str) -> float:
        return self._limits[job_type]

    def budget(self, job_type: str, received_at: float) -> float:
        """Seconds the handler may run now, for a delivery received at monotonic time `received_at`."""
        waited = time.monotonic() - received_at
        return max(0.0, min(self._limits[job_type], self.cap - waited))

    def max_wait(self, job_type: str, received_at: float) -> float:
        """Seconds the delivery may still wait for a flow limit before it starts: as long as its handler
        then keeps its whole time limit (at least half the cap when the limit is longer)."""
        waited = time.monotonic() - received_at
        return self.cap - waited - min(self._limits[job_type], self.cap / 2)
