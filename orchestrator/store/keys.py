"""Every Redis key, key prefix and pub/sub channel the orchestrator uses, in one place.

Tenant ids never contain ':' (protocol.names), so `{tenant}:{rest}` keys cannot collide
across tenants; a job id is always the last part of its key.
"""

from __future__ import annotations

from typing import Final

from protocol.events import JobStatus

PREFIX: Final[str] = "orchestrator"

# Registry (DESIGN "Redis GlobalTaskRegistry").
TASK_UPDATES_CHANNEL: Final[str] = f"{PREFIX}:task_updates"

# Service directory: job type -> service, and worker liveness per service.
ROUTES: Final[str] = f"{PREFIX}:routes"
ANNOUNCED_SERVICES: Final[str] = f"{PREFIX}:services"
# Hash: announced job type -> the result-cache TTL (seconds) its worker declares (none: off by default).
CACHE_DEFAULTS: Final[str] = f"{PREFIX}:cache-defaults"
# Sorted set: announced service -> when a worker of it was last heard from (epoch seconds).
SERVICES_SEEN: Final[str] = f"{PREFIX}:services:seen"

# Result cache: sorted set of every tenant's live entry keys, scored by expiry (ms): the size metric.
CACHE_ENTRIES: Final[str] = f"{PREFIX}:cache-entries"

# Status indexes are passed to the Lua scripts in this fixed order.
STATUS_ORDER: Final[tuple[str, ...]] = tuple(status.value for status in JobStatus)


def job(tenant_id: str, job_id: str) -> str:
    """The job hash."""
    return f"{PREFIX}:tasks:{tenant_id}:{job_id}"


def job_events(tenant_id: str, job_id: str) -> str:
    """List of the job's last client events (JSON), oldest first: its history (store.event_history)."""
    return f"{PREFIX}:events:{tenant_id}:{job_id}"


def script_keys(tenant_id: str, job_id: str) -> list[str]:
    """The KEYS every registry script starts with: the job, the tenant index, the status indexes in order."""
    return [job(tenant_id, job_id), tenant_jobs(tenant_id), *status_indexes(tenant_id)]


def session(tenant_id: str, session_id: str) -> str:
    """Sorted set of a session's job ids, scored by creation time (ms)."""
    return f"{PREFIX}:session:{tenant_id}:{session_id}"


def tenant_jobs(tenant_id: str) -> str:
    """Sorted set of all the tenant's job ids, scored by creation time (ms): the listing index."""
    return f"{PREFIX}:jobs:{tenant_id}"


def tenant_jobs_by_status(tenant_id: str, status: str) -> str:
    return f"{PREFIX}:jobs:{tenant_id}:status:{status}"


def tenant_jobs_by_type(tenant_id: str, job_type: str) -> str:
    return f"{PREFIX}:jobs:{tenant_id}:type:{job_type}"


def status_indexes(tenant_id: str) -> list[str]:
    """One index per job status, in STATUS_ORDER."""
    return [tenant_jobs_by_status(tenant_id, status) for status in STATUS_ORDER]


def idempotency(tenant_id: str, key: str) -> str:
    """Hash {job_id, fingerprint} of the job an idempotency key created."""
    return f"{PREFIX}:idempotency:{tenant_id}:{key}"


def cache_entry(tenant_id: str, job_type: str, digest: str) -> str:
    """Hash {job_id, result, created_at} of a completed job's result, kept for its cache TTL."""
    return f"{PREFIX}:cache:{tenant_id}:{job_type}:{digest}"


def cache_index(tenant_id: str, job_type: str) -> str:
    """Sorted set of the tenant's entry keys of one job type, scored by expiry (ms): DELETE /cache/{type}."""
    return f"{PREFIX}:cache-index:{tenant_id}:{job_type}"


def cache_in_flight(tenant_id: str, job_type: str, digest: str) -> str:
    """Hash {job_id} of the open job identical requests attach to (held like an idempotency key)."""
    return f"{PREFIX}:cache-inflight:{tenant_id}:{job_type}:{digest}"


def job_quota(tenant_id: str) -> str:
    """Hash {tokens, at}: the tenant's job-creation token bucket, shared by every replica."""
    return f"{PREFIX}:job_quota:{tenant_id}"


def sweeper_lock() -> str:
    """The lock the replica that sweeps stuck jobs holds (one replica at a time)."""
    return f"{PREFIX}:sweeper:lock"


def tenant_status_pattern(status: str) -> str:
    """SCAN pattern of every tenant's index of jobs in one status."""
    return f"{PREFIX}:jobs:*:status:{status}"


def workers(service: str) -> str:
    """Hash worker_id -> {seen_at, heartbeat} of a service's worker processes."""
    return f"{PREFIX}:workers:{service}"


def breakers(service: str) -> str:
    """Hash worker_id -> {seen_at, report} of the circuit breakers a service's worker processes reported."""
    return f"{PREFIX}:breakers:{service}"


def stats_minute(tenant_id: str, minute: int) -> str:
    """Hash of a tenant's job counts and latency histogram in one minute (orchestrator.store.job_stats)."""
    return f"{PREFIX}:stats:{tenant_id}:{minute}"


def stats_all_minute(minute: int) -> str:
    """The same over every tenant: the admin's view."""
    return f"{PREFIX}:stats-all:{minute}"


def service_rates(service: str, tenant_id: str | None, minute: int) -> str:
    """Hash of a service's jobs published, completed and failed in one minute: every tenant's, or one's."""
    if tenant_id is None:
        return f"{PREFIX}:rates:{service}:{minute}"
    return f"{PREFIX}:rates:{service}:{tenant_id}:{minute}"


def replicas() -> str:
    """Sorted set replica_id -> last seen (Redis time) of this deployment's orchestrator replicas."""
    return f"{PREFIX}:replicas"
