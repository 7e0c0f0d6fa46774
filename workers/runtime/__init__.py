"""The worker runtime: consumes a service queue, runs handlers, publishes events."""

from workers.runtime.app import WorkerRuntime, run_worker

__all__ = ["WorkerRuntime", "run_worker"]
