"""Errors of the orchestrator: its job API, task publisher and registry.

    OrchestratorError
    ├── BrokerError             `maybe_sent`: whether the broker may have taken the message after all
    │   ├── BrokerUnavailable   no usable connection to RabbitMQ right now (raised at once, never after a wait)
    │   ├── PublishFailed       the broker did not take a message: unroutable, nacked, or no confirm in time
    │   └── PublishUncertain    a job's envelope may have been queued: the job is kept and may still run
    ├── JobError
    │   ├── UnknownJobType      no service has announced the job type
    │   ├── IdempotencyConflict the idempotency key was used before with a different request
    │   ├── UnpublishableJob    the task envelope cannot be encoded, or exceeds the message cap
    │   ├── CacheUnsupported    `cache` asked for a job type that runs as a workflow
    │   ├── JobNotFound         no such job for this tenant
    │   └── QuotaExceeded       the tenant created jobs faster than its quota allows (HTTP 429)
    └── RegistryError           Redis refused a command (a bug or a misconfigured server)
        └── RegistryUnavailable Redis cannot be reached right now; retry later (HTTP 503)

aio-pika and aiormq errors are translated into BrokerError subclasses in `orchestrator.broker.publisher`;
redis-py's into RegistryError subclasses by `orchestrator.store.registry.redis_errors`.
"""

from __future__ import annotations

from collections.abc import Mapping


class OrchestratorError(Exception):
    """Base of the errors raised by the job API, the publisher and the registry."""


class BrokerError(OrchestratorError):
    """RabbitMQ did not confirm a message.

    `maybe_sent` is False only when the broker certainly does not hold the message: it was
    refused (unroutable, nacked) or never sent (no connection, a stalled link, a failed declare).
    After a confirm timeout or a link that broke mid-publish it is True: the message may be queued.
    """

    def __init__(self, detail: str, *, maybe_sent: bool = False) -> None:
        super().__init__(detail)
        self.maybe_sent = maybe_sent


class BrokerUnavailable(BrokerError):
    """The publisher has no open connection or channel; callers should retry later."""


class PublishFailed(BrokerError):
    """The broker was reachable but did not confirm the message."""

    def __init__(self, reason: str, detail: str, *, maybe_sent: bool = False) -> None:
        super().__init__(detail, maybe_sent=maybe_sent)
        self.reason = reason  # unroutable, nacked, timeout, channel_error or lane_unrecorded: a metric label


class PublishUncertain(BrokerError):
    """A new job's envelope may or may not have reached its queue.

    The job is kept (queued, with its idempotency key): if the broker took the message it runs
    and is tracked as usual; if not, the sweeper publishes it again once it finds the queue empty.
    """

    def __init__(self, job_id: str, cause: BrokerError) -> None:
        super().__init__(f"job {job_id} was recorded but its publish is unconfirmed: {cause}", maybe_sent=True)
        self.job_id = job_id


class JobError(OrchestratorError):
    """A job request that cannot be served as asked."""


class UnknownJobType(JobError):
    def __init__(self, job_type: str, known_types: Mapping[str, str]) -> None:
        super().__init__(f"no service serves job type {job_type!r}")
        self.job_type = job_type
        self.known_types = dict(known_types)


class IdempotencyConflict(JobError):
    def __init__(self, idempotency_key: str, job_id: str) -> None:
        super().__init__(f"idempotency key {idempotency_key!r} was already used for a different request")
        self.idempotency_key = idempotency_key
        self.job_id = job_id


class UnpublishableJob(JobError):
    """The job's task envelope cannot go to a worker: the wire format cannot carry a value of its
    payload, or the encoded envelope is larger than the message cap the workers enforce."""

    def __init__(self, detail: str, *, too_large: bool) -> None:
        super().__init__(detail)
        self.too_large = too_large


class CacheUnsupported(JobError):
    def __init__(self, job_type: str) -> None:
        super().__init__(
            f"job type {job_type!r} runs as a workflow, which the result cache does not serve: "
            "its steps have effects of their own (a document is indexed), so it runs every time"
        )
        self.job_type = job_type


class JobNotFound(JobError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class NotRetryable(JobError):
    """POST /jobs/{id}/retry of a job that did not end failed, timed out or cancelled, or of a workflow
    execution's job (`execution`: those are retried through /executions/{id}/retry)."""

    def __init__(self, job_id: str, status: str, *, execution: bool = False) -> None:
        if execution:
            detail = f"job {job_id} is a workflow execution: retry it with POST /executions/{job_id}/retry"
        else:
            detail = f"job {job_id} is {status}: only a failed, timed out or cancelled job runs again"
        super().__init__(detail)
        self.job_id = job_id
        self.status = status
        self.execution = execution


class RegistryError(OrchestratorError):
    """Redis refused a registry command."""


class RegistryUnavailable(RegistryError):
    """Redis cannot be reached; the operation may be retried later."""


class QuotaExceeded(JobError):
    """The tenant's job-creation bucket holds fewer tokens than the request costs; nothing was created.

    `retry_after` is the seconds until enough tokens are there, None when the request costs more
    than the bucket ever holds (its burst)."""

    def __init__(self, tenant_id: str, cost: int, available: int, burst: int, retry_after: float | None) -> None:
        if retry_after is None:
            detail = (
                f"this request creates {cost} jobs, more than the quota of tenant {tenant_id!r} allows at once "
                f"({burst}): split it"
            )
        else:
            detail = (
                f"tenant {tenant_id!r} is over its job creation quota: this request creates {cost} job(s), "
                f"{available} can be created now; retry in {retry_after:.2f} s"
            )
        super().__init__(detail)
        self.tenant_id = tenant_id
        self.cost = cost
        self.available = available
        self.burst = burst
        self.retry_after = retry_after
