"""The built-in services; each module exposes `worker` and a `register(worker, ...)` that adds its handler."""

from __future__ import annotations

from typing import Final

from protocol.services import BUILTIN_SERVICES
from workers.retry import RetryPolicy
from workers.sdk import Worker

BUILTIN_MODULES: Final[dict[str, str]] = {
    name: f"workers.services.{name}" for name in ("query", "embedding", "ingestion", "agent")
}


def builtin_worker(service: str) -> Worker:
    """A Worker with the built-in service's concurrency, prefetch, retries and time limit from protocol.services."""
    profile = BUILTIN_SERVICES[service]
    return Worker(
        profile.name,
        concurrency=profile.concurrency,
        prefetch=profile.prefetch,
        retry=RetryPolicy.from_defaults(profile.retry),
        time_limit=profile.time_limit_seconds,
    )
