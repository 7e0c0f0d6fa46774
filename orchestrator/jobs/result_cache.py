"""Which jobs use the result cache, and under which slot.

A job uses the cache when its request asks (`cache: {ttl_seconds}`), or when it says nothing and its
job type has a default (its worker's `cache_ttl`, or a built-in type's). Its slot is tenant + type +
the payload's canonical digest; the registry stores the result there when the job completes and lets
identical requests attach to it while it runs, and answers a request from it when the job is made
(`RedisTaskRegistry.create`, one script for all three).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from orchestrator.jobs.canonical import canonical_digest
from orchestrator.models import CacheSlot

# How long identical requests may attach to one open job: past it (a job lost without an end, which the
# sweeper fails within the hour anyway) the next identical request starts a job of its own.
DEFAULT_IN_FLIGHT_SECONDS: Final[int] = 3600


class CacheDefaults(Protocol):
    """`orchestrator.store.directory.ServiceDirectory`."""

    async def cache_ttl_for(self, job_type: str) -> int | None: ...


class JobCache:
    def __init__(self, defaults: CacheDefaults, *, in_flight_seconds: int = DEFAULT_IN_FLIGHT_SECONDS) -> None:
        self._defaults = defaults
        self._in_flight = in_flight_seconds

    async def slot_for(self, job_type: str, payload: dict[str, Any], requested_ttl: int | None) -> CacheSlot | None:
        """The job's slot; None when it skips the cache. `requested_ttl`: None for the type's default, 0 for off."""
        ttl = await self._defaults.cache_ttl_for(job_type) if requested_ttl is None else requested_ttl
        if not ttl:
            return None
        return CacheSlot(job_type, canonical_digest(payload), ttl, self._in_flight)
