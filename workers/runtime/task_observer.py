"""What the task runner tells an observer (the process's metrics, workers.runtime.worker_metrics) as
deliveries go through it. Calls are synchronous and must not raise or block."""

from __future__ import annotations

from typing import Protocol

from protocol.envelope import TaskEnvelope


class TaskObserver(Protocol):
    def attempt_started(self, envelope: TaskEnvelope) -> None:
        """An attempt is about to run in this process."""

    def attempt_ran(self, envelope: TaskEnvelope, seconds: float) -> None:
        """The attempt ran this long (handler included), whatever came of it."""

    def retried(self, envelope: TaskEnvelope) -> None:
        """The attempt failed or was lost, and the task's next attempt was published."""

    def parked(self, envelope: TaskEnvelope | None) -> None:
        """The message was parked in the dead-letter queue (envelope None: it did not decode)."""

    def finished(self, envelope: TaskEnvelope, status: str) -> None:
        """The task's terminal event (completed, failed, timed_out, cancelled) was confirmed."""
