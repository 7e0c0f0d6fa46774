"""Errors of the workers package.

WorkerError
├── ConfigurationError       a Worker or its settings cannot be used as given
├── BrokerError              RabbitMQ refused or lost an operation (aio-pika/aiormq errors, translated)
│   └── UnroutableError      a mandatory message had no queue to go to
├── PermanentError           raised by a handler: the task fails and is never retried
├── TimeLimitExceeded        the handler ran past its time limit: the attempt fails, a retry may follow
├── DeadlineExceeded         the handler was still running when the task's deadline passed: timed out
├── ServiceCallError         a child task (ctx.call_service) failed or was cancelled
│   └── ServiceCallTimeout   no answer from the child within the timeout, after every retry
└── HttpError                an outgoing call through ctx.http failed
    ├── HttpConnectionError  no response: connection error or timeout, after every retry
    ├── HttpStatusError      raise_for_status() on a non-2xx response (naming the attempts made)
    └── CircuitOpenError     the target's circuit breaker is open: the call was not sent
"""

from __future__ import annotations

from datetime import datetime


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
    """The child task of `ctx.call_service` did not complete."""

    def __init__(self, service: str, job_type: str, error: str, error_type: str) -> None:
        super().__init__(f"{service}/{job_type} failed: {error_type}: {error}")
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
