"""Which jobs use the result cache, and the lookup that answers a request before any job is made.

A job uses the cache when its request asks (`cache: {ttl_seconds}`), or when it says nothing and its
job type has a default (its worker's `cache_ttl`, or a built-in type's). Its slot is tenant + type +
the payload's canonical digest; the registry stores the result there when the job completes and lets
identical requests attach to it while it runs (`RedisTaskRegistry.create`).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from orchestrator.jobs.canonical import canonical_digest
from orchestrator.models import CachedResult, CacheSlot

# How long identical requests may attach to one open job: past it (a job lost without an end, which the
# sweeper fails within the hour anyway) the next identical request starts a job of its own.
DEFAULT_IN_FLIGHT_SECONDS: Final[int] = 3600


class CacheDefaults(Protocol):
    """`orchestrator.store.directory.ServiceDirectory`."""

    async def cache_ttl_for(self, job_type: str) -> int | None: ...


class CacheReader(Protocol):
    """`orchestrator.store.result_cache.RedisResultCache`."""

    async def get(self, tenant_id: str, job_type: str, digest: str) -> CachedResult | None: ...


class JobCache:
    def __init__(
        self, reader: CacheReader, defaults: CacheDefaults, *, in_flight_seconds: int = DEFAULT_IN_FLIGHT_SECONDS
    ) -> None:
        self._reader = reader
        self._defaults = defaults
        self._in_flight = in_flight_seconds

    async def slot_for(self, job_type: str, payload: dict[str, Any], requested_ttl: int | None) -> CacheSlot | None:
        """The job's slot; None when it skips the cache. `requested_ttl`: None for the type's default, 0 for off."""
        ttl = await self._defaults.cache_ttl_for(job_type) if requested_ttl is None else requested_ttl
        if not ttl:
            return None
        return CacheSlot(job_type, canonical_digest(payload), ttl, self._in_flight)

    async def lookup(self, tenant_id: str, slot: CacheSlot) -> CachedResult | None:
        return await self._reader.get(tenant_id, slot.job_type, slot.digest)
