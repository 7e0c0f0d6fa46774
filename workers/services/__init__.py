"""The built-in services; each module exposes `worker` and a `register(worker, ...)` that adds its handler."""

from __future__ import annotations

from typing import Final

from protocol.services import BUILTIN_SERVICES
from workers.rate_limit import RateLimit
from workers.retry import RetryPolicy
from workers.sdk import RateLimitFromSettings, Worker

BUILTIN_MODULES: Final[dict[str, str]] = {
    name: f"workers.services.{name}" for name in ("query", "embedding", "ingestion", "agent")
}


def builtin_worker(service: str, *, rate_limit: RateLimitFromSettings | None = None) -> Worker:
    """A Worker with the built-in service's concurrency, prefetch, retries and time limit from protocol.services."""
    profile = BUILTIN_SERVICES[service]
    return Worker(
        profile.name,
        concurrency=profile.concurrency,
        prefetch=profile.prefetch,
        retry=RetryPolicy.from_defaults(profile.retry),
        time_limit=profile.time_limit_seconds,
        rate_limit=rate_limit,
    )


def profile_rate_limit(service: str) -> RateLimit | None:
    """The built-in service's rate_limit_per_minute, when it has one."""
    per_minute = BUILTIN_SERVICES[service].rate_limit_per_minute
    return RateLimit(per_minute, 60) if per_minute is not None else None
