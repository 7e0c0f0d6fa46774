"""RedisResultCache: reading and clearing the result cache's entries.

Entries are written by the registry's scripts, in the same step that ends a cache-enabled job
(`orchestrator.store.scripts`); this side only reads them, clears a tenant's type, and counts them.
"""

from __future__ import annotations

import json
import time

import redis.asyncio as aioredis

from orchestrator.models import CachedResult
from orchestrator.store import keys
from orchestrator.store import scripts as registry_scripts
from orchestrator.store.codec import text
from orchestrator.store.registry import redis_errors


class RedisResultCache:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._clear = redis.register_script(registry_scripts.CLEAR_CACHE)

    async def get(self, tenant_id: str, job_type: str, digest: str) -> CachedResult | None:
        with redis_errors("reading the result cache"):
            job_id, result, created_at = await self._redis.hmget(
                keys.cache_entry(tenant_id, job_type, digest), ["job_id", "result", "created_at"]
            )
        if job_id is None or result is None:
            return None
        return CachedResult(text(job_id), json.loads(result), text(created_at or b""))

    async def clear(self, tenant_id: str, job_type: str) -> int:
        """Remove the tenant's entries of a job type; how many there were."""
        with redis_errors("clearing the result cache"):
            removed = await self._clear(keys=[keys.cache_index(tenant_id, job_type), keys.CACHE_ENTRIES])
        return int(removed)

    async def count(self) -> int:
        """Entries not yet expired, over every tenant (one ZCOUNT, for a metrics scrape)."""
        with redis_errors("counting cache entries"):
            return int(await self._redis.zcount(keys.CACHE_ENTRIES, int(time.time() * 1000), "+inf"))
