"""Errors of the workers package.

WorkerError
├── ConfigurationError       a Worker or its settings cannot be used as given
├── BrokerError              RabbitMQ refused or lost an operation (aio-pika/aiormq errors, translated)
│   └── UnroutableError      a mandatory message had no queue to go to
├── PermanentError           raised by a handler: the task fails and is never retried
├── TimeLimitExceeded        the handler ran past its time limit: the attempt fails, a retry may follow
├── DeadlineExceeded         the handler was still running when the task's deadline passed: timed out
├── ServiceCallError         a call to another service did not succeed: ctx.call_service's child task
│   │                        failed or was cancelled, or ctx.submit_job could not create the child job
│   ├── ServiceCallTimeout   no answer from the child within the timeout, after every retry
│   ├── ChildJobRefused      the orchestrator refused the child job (4xx), or no service token is set;
│   │                        also a PermanentError: the task fails without a retry
│   └── OrchestratorUnavailable  no answer, 5xx or 429 from the orchestrator after every try (or its
│                            breaker is open): the task may be retried (it finds the jobs it made)
└── HttpError                an outgoing call through ctx.http failed
    ├── HttpConnectionError  no response: connection error or timeout, after every retry
    ├── HttpStatusError      raise_for_status() on a non-2xx response (naming the attempts made)
    └── CircuitOpenError     the target's circuit breaker is open: the call was not sent
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final


class WorkerError(Exception):
    """Base of every error raised by `workers`."""


class ConfigurationError(WorkerError):
    """A Worker, handler or setting is not usable."""


class BrokerError(WorkerError):
    """A RabbitMQ operation failed; the cause is the aio-pika/aiormq error."""


class UnroutableError(BrokerError):
    """The broker returned a mandatory message: no queue is bound for its routing key."""


class PermanentError(WorkerError):
    """Raise from a handler to fail the task for good: retrying cannot help."""


class TimeLimitExceeded(WorkerError):
    """The handler ran longer than its time limit (this attempt fails; a retry may follow)."""


class DeadlineExceeded(WorkerError):
    """The handler was still running when the task's deadline passed."""


class ServiceCallError(WorkerError):
    """The child task of `ctx.call_service` did not complete, or `ctx.submit_job` made no child job."""

    def __init__(self, service: str, job_type: str, error: str, error_type: str, *, message: str | None = None) -> None:
        super().__init__(message or f"{service}/{job_type} failed: {error_type}: {error}")
        self.service = service
        self.job_type = job_type
        self.error = error
        self.error_type = error_type


class ServiceCallTimeout(ServiceCallError):
    """The child task did not answer within the timeout on any attempt."""

    def __init__(self, service: str, job_type: str, timeout: float, attempts: int) -> None:
        super().__init__(
            service,
            job_type,
            f"no answer within {timeout:g} s after {attempts} attempt(s)",
            "ServiceCallTimeout",
        )
        self.timeout = timeout
        self.attempts = attempts


# ServiceCallError.service of the errors of `ctx.submit_job`: the orchestrator routes the job type.
ORCHESTRATOR: Final[str] = "orchestrator"


class ChildJobRefused(ServiceCallError, PermanentError):
    """The orchestrator refused the child job of `ctx.submit_job` (unknown type, invalid payload, the
    idempotency key of this call used for another job...), or this service has no token: never retried.
    `status` is the HTTP status (0 when no request was sent), `error_type` the API's error code and
    `error` its detail."""

    def __init__(self, job_type: str, status: int, error_type: str, error: str) -> None:
        answered = f"answered {status} {error_type}" if status else f"was not asked ({error_type})"
        super().__init__(
            ORCHESTRATOR,
            job_type,
            error,
            error_type,
            message=f"child job of type {job_type!r}: the orchestrator {answered}: {error}",
        )
        self.status = status


class OrchestratorUnavailable(ServiceCallError):
    """`ctx.submit_job` got no answer, a 5xx or a 429 from the orchestrator after every try its HTTP
    client allows, or its breaker is open; a retry of the task is safe (its calls find the jobs made)."""

    def __init__(self, job_type: str, url: str, reason: str) -> None:
        super().__init__(
            ORCHESTRATOR,
            job_type,
            reason,
            "OrchestratorUnavailable",
            message=f"child job of type {job_type!r}: no job made by {url}: {reason}",
        )


class HttpError(WorkerError):
    """An outgoing HTTP call failed."""


class HttpConnectionError(HttpError):
    """The request got no response (connection error or timeout)."""


class HttpStatusError(HttpError):
    """The response status is not 2xx."""

    def __init__(self, method: str, url: str, status: int, body_excerpt: str, attempts: int = 1) -> None:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{method} {url} answered {status}{tries}: {body_excerpt}")
        self.method = method
        self.url = url
        self.status = status
        self.body_excerpt = body_excerpt
        self.attempts = attempts


class CircuitOpenError(HttpError):
    """The target failed too often lately: calls fail fast until `half_open_at`, when one probe may go.
    Not permanent: the task runtime retries it like any other failure."""

    def __init__(self, target: str, half_open_at: datetime, *, probing: bool = False) -> None:
        when = "a probe call is under way" if probing else f"half-opens at {half_open_at.isoformat()}"
        super().__init__(f"circuit breaker open for {target}: {when}")
        self.target = target
        self.half_open_at = half_open_at

    def retry_after_seconds(self) -> float:
        """How long until a probe may go: the next task attempt is not scheduled sooner, so an open
        breaker's cooldown does not use up the task's attempts (0 while a probe is already under way)."""
        return max(0.0, (self.half_open_at - datetime.now(UTC)).total_seconds())
