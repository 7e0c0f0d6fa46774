"""Handler time limits, kept below RabbitMQ's consumer timeout.

The broker closes a channel whose consumer holds a delivery unacked past `consumer_timeout`,
and every task on that channel dies with it. A delivery's clock starts when the broker hands
it over (it may wait for a concurrency slot first), so the budget of one run is the cap minus
the time already spent since delivery.
"""

from __future__ import annotations

import logging
import time

from workers.sdk import Worker

log = logging.getLogger(__name__)


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
